//! The build context: the folder `copy:` steps read (`--context DIR`, by default the
//! recipe's folder), less what its ignore file excludes. `.xbakeignore`, else
//! `.dockerignore`, at the context's top, in Docker's syntax ([`ignore`], [`pattern`]).
//!
//! Every reader of the context goes through [`BuildContext::entries`] or
//! [`BuildContext::is_ignored`], so what a copy writes into a layer and what its cache
//! key hashes are the same files: an ignored file can neither reach an image nor
//! invalidate a step.

pub mod ignore;
pub mod pattern;

use std::io::Read;
use std::path::{Path, PathBuf};

/// Ignore files, in the order they are looked for; the first one present is used.
pub const IGNORE_FILES: [&str; 2] = [".xbakeignore", ".dockerignore"];

/// The most an ignore file may hold. Real ones are a few hundred bytes; the bound keeps
/// a context from making the build read without end.
pub const IGNORE_FILE_LIMIT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: {source}", dir.display())]
    Open {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("build context {} is not a folder", dir.display())]
    NotAFolder { dir: PathBuf },
    #[error(
        "ignore file {} is a {kind}; it must be a regular file in the context (symbolic \
         links are not followed)",
        path.display()
    )]
    IgnoreFileNotRegular { path: PathBuf, kind: &'static str },
    #[error("ignore file {}: {source}", path.display())]
    IgnoreFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ignore file {} is larger than {limit} bytes", path.display())]
    IgnoreFileTooLarge { path: PathBuf, limit: u64 },
    #[error("ignore file {}, {source}", path.display())]
    BadPattern {
        path: PathBuf,
        #[source]
        source: ignore::BadLine,
    },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is outside the build context {}", path.display(), dir.display())]
    Outside { path: PathBuf, dir: PathBuf },
}

/// The context folder (canonical) and its ignore rules.
#[derive(Clone, Debug)]
pub struct BuildContext {
    dir: PathBuf,
    ignore_file: Option<PathBuf>,
    matcher: ignore::Matcher,
    /// Folders inside the context that are never part of it, whatever the ignore file
    /// says: xbake's own cache when it lies there (see [`BuildContext::excluding`]).
    excluded: Vec<PathBuf>,
}

/// One entry of a copy source that the context lets through.
#[derive(Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// 0 for the source itself.
    pub depth: usize,
    /// Not following a final symlink.
    pub meta: std::fs::Metadata,
}

impl BuildContext {
    /// The same folder with nothing ignored: what a run step's bind mount of the
    /// context shows (the folder itself is bound), so what its cache key must cover.
    pub fn unfiltered(&self) -> BuildContext {
        BuildContext {
            dir: self.dir.clone(),
            ignore_file: None,
            matcher: ignore::Matcher::default(),
            excluded: self.excluded.clone(),
        }
    }

    /// The same context without `folder` (and everything in it) when it lies inside:
    /// the build's cache, whose files (locks, the running build's own trees) must never
    /// reach an image or a step's key. `folder` need not exist yet; it is compared by
    /// its canonical form as far as it exists.
    pub fn excluding(mut self, folder: &Path) -> BuildContext {
        let canonical = canonical_prefix(folder);
        if canonical.starts_with(&self.dir) && canonical != self.dir {
            self.excluded.push(canonical);
        }
        self
    }

    fn is_excluded(&self, path: &Path) -> bool {
        self.excluded.iter().any(|x| path.starts_with(x))
    }

    /// Opens `dir` and reads its ignore file, if it has one.
    pub fn open(dir: &Path) -> Result<BuildContext, ContextError> {
        let canonical = dir.canonicalize().map_err(|source| ContextError::Open {
            dir: dir.to_path_buf(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(ContextError::NotAFolder {
                dir: dir.to_path_buf(),
            });
        }
        let mut context = BuildContext {
            dir: canonical,
            ignore_file: None,
            matcher: ignore::Matcher::default(),
            excluded: Vec::new(),
        };
        for name in IGNORE_FILES {
            let path = context.dir.join(name);
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::IgnoreFileRead { path, source }),
                Ok(_) => {}
            }
            let text = read_ignore_file(&context.dir, name)?;
            context.matcher =
                ignore::Matcher::new(&ignore::read_lines(&text)).map_err(|source| {
                    ContextError::BadPattern {
                        path: path.clone(),
                        source,
                    }
                })?;
            context.ignore_file = Some(path);
            break;
        }
        Ok(context)
    }

    /// The canonical context folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ignore file in use, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// `path` relative to the context, slash-separated, as patterns see it.
    fn relative(&self, path: &Path) -> Result<String, ContextError> {
        let rel = path
            .strip_prefix(&self.dir)
            .map_err(|_| ContextError::Outside {
                path: path.to_path_buf(),
                dir: self.dir.clone(),
            })?;
        // Go compares bytes as strings; a name that is not UTF-8 is matched in its
        // lossy form (Go's regexp reads such a byte as U+FFFD too). Cleaned, as the
        // paths of BuildKit's walk are: the top is `.`.
        Ok(pattern::go_clean(&rel.to_string_lossy()))
    }

    /// Whether the ignore file excludes `path` (inside the context; the context's top
    /// never is excluded). A folder that is excluded may still hold entries that an
    /// exception includes again: [`BuildContext::entries`] lists those.
    pub fn is_ignored(&self, path: &Path) -> Result<bool, ContextError> {
        let rel = self.relative(path)?;
        Ok(self.is_excluded(path) || self.matcher.is_ignored(&rel))
    }

    /// `source` and everything under it that the ignore file lets through, in walk
    /// order (a folder before its contents, names sorted), without following symlinks.
    /// An excluded folder is listed when an exception includes something inside it, as
    /// BuildKit sends such a folder; empty when nothing of `source` is let through.
    pub fn entries(&self, source: &Path) -> Result<Vec<Entry>, ContextError> {
        let top = self.relative(source)?;
        // Parent results by depth below `source`; first those of its own parent
        // folders, as a walk from the context's top would have found them.
        let mut infos = vec![self.parents_of(&top)];
        // Without exceptions, nothing below an excluded folder can be included again.
        let prune = !self.matcher.has_exclusions();
        walk(source, prune, &self.excluded, |path, depth| {
            let rel = self.relative(path)?;
            infos.truncate(depth + 1);
            let (ignored, info) = if rel == "." {
                (false, ignore::ParentMatches::default())
            } else {
                self.matcher.matches_under(&rel, &infos[depth])
            };
            infos.push(info);
            Ok(ignored)
        })
    }

    /// The parent results for `rel`'s parent folders.
    fn parents_of(&self, rel: &str) -> ignore::ParentMatches {
        let mut info = ignore::ParentMatches::default();
        if let Some((parent, _)) = rel.rsplit_once('/') {
            let dirs: Vec<&str> = parent.split('/').collect();
            for n in 1..=dirs.len() {
                info = self.matcher.matches_under(&dirs[..n].join("/"), &info).1;
            }
        }
        info
    }
}

/// Everything under `source`, as [`BuildContext::entries`] lists it, for a tree that no
/// ignore file applies to (a stage's or an image's filesystem).
pub fn all_entries(source: &Path) -> Result<Vec<Entry>, ContextError> {
    walk(source, false, &[], |_, _| Ok(false))
}

/// Walks `source` in order, asking `ignored(path, depth)` about each entry; returns the
/// entries not ignored and the folders above them. With `prune`, an ignored folder's
/// contents are not visited. `skip`: folders left out entirely, never visited.
fn walk(
    source: &Path,
    prune: bool,
    skip: &[PathBuf],
    mut ignored: impl FnMut(&Path, usize) -> Result<bool, ContextError>,
) -> Result<Vec<Entry>, ContextError> {
    let mut walked: Vec<(Entry, bool)> = Vec::new();
    let mut entries = walkdir::WalkDir::new(source)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| ContextError::Read {
            path: e.path().unwrap_or(source).to_path_buf(),
            source: e.into(),
        })?;
        let depth = entry.depth();
        if skip.iter().any(|s| entry.path().starts_with(s)) {
            if entry.file_type().is_dir() {
                entries.skip_current_dir();
            }
            continue;
        }
        let excluded = ignored(entry.path(), depth)?;
        let meta = entry.metadata().map_err(|e| ContextError::Read {
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        if excluded && prune && meta.is_dir() {
            entries.skip_current_dir();
        }
        let path = entry.into_path();
        walked.push((Entry { path, depth, meta }, excluded));
    }
    Ok(keep_with_parents(walked))
}

/// `path` canonical as far as it exists, the rest appended as written (a folder that
/// is yet to be made).
fn canonical_prefix(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut head = absolute.as_path();
    loop {
        if let Ok(real) = head.canonicalize() {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                head = parent;
            }
            _ => return absolute,
        }
    }
}

/// The entries not ignored, plus the folders above them (walk order: parents first).
fn keep_with_parents(walked: Vec<(Entry, bool)>) -> Vec<Entry> {
    let mut keep = vec![false; walked.len()];
    // Indices of the folders above the current entry, outermost first.
    let mut open: Vec<usize> = Vec::new();
    for (i, (entry, ignored)) in walked.iter().enumerate() {
        while open
            .last()
            .is_some_and(|&j| walked[j].0.depth >= entry.depth)
        {
            open.pop();
        }
        if !ignored {
            keep[i] = true;
            for &j in open.iter().rev() {
                if keep[j] {
                    break;
                }
                keep[j] = true;
            }
        }
        if entry.meta.is_dir() {
            open.push(i);
        }
    }
    walked
        .into_iter()
        .zip(keep)
        .filter_map(|((entry, _), keep)| keep.then_some(entry))
        .collect()
}

/// The ignore file's text: a regular file right in the context folder (no symlink is
/// followed, so it cannot be read from elsewhere), at most [`IGNORE_FILE_LIMIT`] bytes.
fn read_ignore_file(dir: &Path, name: &str) -> Result<String, ContextError> {
    let path = dir.join(name);
    use crate::image::ImageError;
    let opened = crate::image::regular_file::open_regular(dir, name).map_err(|e| match e {
        ImageError::NotRegular { kind, .. } => ContextError::IgnoreFileNotRegular {
            path: path.clone(),
            kind,
        },
        ImageError::Io { source, .. } => ContextError::IgnoreFileRead {
            path: path.clone(),
            source,
        },
        other => ContextError::IgnoreFileRead {
            path: path.clone(),
            source: std::io::Error::other(other),
        },
    })?;
    let too_large = || ContextError::IgnoreFileTooLarge {
        path: path.clone(),
        limit: IGNORE_FILE_LIMIT,
    };
    if opened.size > IGNORE_FILE_LIMIT {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    opened
        .file
        .take(IGNORE_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ContextError::IgnoreFileRead {
            path: path.clone(),
            source,
        })?;
    if bytes.len() as u64 > IGNORE_FILE_LIMIT {
        return Err(too_large());
    }
    // Docker reads the lines as Go strings, bytes as they are; invalid UTF-8 can only
    // ever match names that are not UTF-8 either, which are matched lossily too.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
