//! Finds the system libvirt through pkg-config and links it (`libvirt-dev` on Debian).

/// The oldest libvirt that has every symbol this crate declares (`virGetLastErrorMessage`
/// arrived in 1.0.6; everything else is older).
const MIN_LIBVIRT: &str = "1.0.6";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(err) = pkg_config::Config::new()
        .atleast_version(MIN_LIBVIRT)
        .probe("libvirt")
    {
        eprintln!(
            "anyloop-libvirt needs libvirt {MIN_LIBVIRT} or newer with its development files \
             (Debian/Ubuntu: `apt-get install libvirt-dev pkg-config`).\n\
             pkg-config could not provide it: {err}"
        );
        std::process::exit(1);
    }
}
