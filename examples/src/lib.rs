//! Example library (in progress).
