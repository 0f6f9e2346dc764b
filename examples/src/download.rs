//! What the `fetch` and `gtk_fetch` programs share: the handler that stores a body, and the
//! file name a URL is saved under.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyloop_curl::curl::easy::{Handler, WriteError};

/// Where a body goes: a file (created at the first byte, so a transfer that fails before
/// leaves none), or nowhere (only counted).
#[derive(Debug)]
pub struct Store {
    file: Option<File>,
    /// Where the file goes, and whether it was created.
    path: Option<PathBuf>,
    created: bool,
    /// Body bytes received.
    pub bytes: u64,
    /// The first write error, if the file could not take the data.
    pub error: Option<io::Error>,
}

impl Store {
    /// Counts the body and keeps nothing.
    pub fn discard() -> Store {
        Store {
            file: None,
            path: None,
            created: false,
            bytes: 0,
            error: None,
        }
    }

    /// Writes the body into a file at `path`, created (or truncated) at the first byte.
    pub fn file(path: PathBuf) -> Store {
        Store {
            path: Some(path),
            ..Store::discard()
        }
    }

    /// The file the body went to, once created.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().filter(|_| self.created)
    }
}

impl Handler for Store {
    /// Runs on the loop's thread, inside libcurl's socket action: a write to a local file is
    /// short enough not to hold the loop up (a program writing to a slow network share would
    /// queue the data for a writer of its own).
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if let (Some(path), false) = (&self.path, self.created) {
            match File::create(path) {
                Ok(file) => self.file = Some(file),
                Err(error) => {
                    self.error = Some(error);
                    return Ok(0); // libcurl ends the transfer with CURLE_WRITE_ERROR
                }
            }
            self.created = true;
        }
        if let Some(file) = &mut self.file {
            if let Err(error) = file.write_all(data) {
                self.error = Some(error);
                return Ok(0); // libcurl ends the transfer with CURLE_WRITE_ERROR
            }
        }
        self.bytes += data.len() as u64;
        Ok(data.len())
    }
}

/// The name a URL's body is saved under: the last segment of its path, else `index.html`;
/// `number` (from 1) is prefixed when several URLs would share a name.
pub fn file_name(url: &str, number: usize, unique: bool) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest);
    let name = after_scheme
        .split_once('/')
        .map_or("", |(_, path)| path)
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
        .unwrap_or("index.html");
    if unique {
        name.to_owned()
    } else {
        format!("{number}-{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn names_come_from_the_path() {
        assert_eq!(file_name("http://h/a/b.tar.gz?x=1", 1, true), "b.tar.gz");
        assert_eq!(file_name("http://h/", 2, true), "index.html");
        assert_eq!(file_name("http://h", 2, true), "index.html");
        assert_eq!(file_name("https://h/dir/", 3, false), "3-index.html");
        assert_eq!(file_name("http://h/../..", 1, true), "index.html");
    }
}
