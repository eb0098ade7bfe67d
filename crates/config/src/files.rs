//! File reads, injected: the validator reads the config's policy files through [`Files`],
//! so tests hand it a map ([`MemFiles`]) and the gateway the disk ([`DiskFiles`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where the config's files are read from.
pub trait Files {
    /// The text of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<String>;
}

/// The real file system (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFiles;

impl Files for DiskFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Files held in memory, by path: any other path is not found.
#[derive(Debug, Clone, Default)]
pub struct MemFiles(BTreeMap<PathBuf, String>);

impl MemFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.0.insert(path.into(), text.into());
        self
    }
}

impl Files for MemFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}
