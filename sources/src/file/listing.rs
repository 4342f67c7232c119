//! Finding the files to read: what the include globs match, less the excludes, less
//! refused symlinks. A listing that hit any error other than "not found" says it is
//! incomplete, so the reader never takes a failure to look for a deletion.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use metrics::Counter;
use siemflow_core::log_limit::RateLimitedLog;

use super::complaints::{OncePerPath, RECURRING_PROBLEM_PERIOD};
use super::config::FollowSymlinks;

/// What identifies a file while it exists: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// The file system's device number.
    pub device: u64,
    /// The inode number.
    pub inode: u64,
}

impl FileId {
    /// The identity in `meta`.
    pub fn of(meta: &Metadata) -> Self {
        FileId {
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// A regular file a listing found.
#[derive(Debug)]
pub struct Found {
    /// The first matching path that leads to it.
    pub path: PathBuf,
    /// Its size when listed.
    pub size: u64,
}

/// What one listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The files, by identity.
    pub found: HashMap<FileId, Found>,
    /// False when something could not be looked at: a file missing from this listing
    /// may still exist.
    pub complete: bool,
    /// True when looking failed because the process is out of descriptors.
    pub out_of_descriptors: bool,
}

/// Lists the files of one source.
pub struct Lister {
    include: Vec<String>,
    /// Per include pattern: the folder before its first wildcard.
    bases: Vec<PathBuf>,
    exclude: Vec<glob::Pattern>,
    follow: FollowSymlinks,
    listing_failed: Counter,
    symlink_refused: Counter,
    failures: RateLimitedLog,
    refused: OncePerPath,
}

/// Why a path was not listed.
enum Refusal {
    /// A symlink the policy does not follow.
    Symlink { target: PathBuf },
    /// It changed while it was being checked; the next listing looks again.
    Changed,
}

impl Lister {
    /// A lister for these patterns; `listing_failed` and `symlink_refused` count
    /// `component_errors_total` of those types.
    pub fn new(
        include: Vec<String>,
        exclude: Vec<glob::Pattern>,
        follow: FollowSymlinks,
        listing_failed: Counter,
        symlink_refused: Counter,
    ) -> Self {
        let bases = include.iter().map(|p| base_folder(p)).collect();
        Lister {
            include,
            bases,
            exclude,
            follow,
            listing_failed,
            symlink_refused,
            failures: RateLimitedLog::new(RECURRING_PROBLEM_PERIOD),
            refused: OncePerPath::default(),
        }
    }

    /// Lists the matching files. `known` says which files are already followed: only
    /// new ones are held to the symlink rule (a followed file was checked when found).
    pub fn list(&mut self, known: impl Fn(FileId) -> bool) -> Listing {
        let mut listing = Listing {
            complete: true,
            ..Listing::default()
        };
        let mut errors = Errors::default();
        let mut refused_now = HashSet::new();
        let mut real_bases: Option<Vec<Option<PathBuf>>> = None;
        for (index, pattern) in self.include.iter().enumerate() {
            // glob skips a folder it cannot look into without saying so: look at the
            // pattern's base folder first.
            if let Err(e) = fs::metadata(&self.bases[index]) {
                errors.note(&self.bases[index], &e);
            }
            let paths = match glob::glob(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    errors.note(
                        Path::new(pattern),
                        &io::Error::new(io::ErrorKind::InvalidInput, e),
                    );
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(path) => path,
                    Err(e) => {
                        errors.note(e.path(), e.error());
                        continue;
                    }
                };
                if self.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                let meta = match fs::metadata(&path) {
                    Ok(meta) => meta,
                    Err(e) => {
                        // Not found: deleted since the folder was read, or a dangling link.
                        errors.note(&path, &e);
                        continue;
                    }
                };
                if !meta.is_file() {
                    continue;
                }
                let id = FileId::of(&meta);
                if listing.found.contains_key(&id) {
                    continue;
                }
                if !known(id) {
                    let real_bases = real_bases.get_or_insert_with(|| {
                        self.bases
                            .iter()
                            .map(|b| fs::canonicalize(b).ok())
                            .collect()
                    });
                    match self.admit(&path, index, id, real_bases) {
                        Ok(()) => {}
                        Err(Ok(Refusal::Symlink { target })) => {
                            if self.refused.first(&path) {
                                self.symlink_refused.increment(1);
                                tracing::warn!(
                                    path = %path.display(),
                                    target = %target.display(),
                                    follow_symlinks = self.follow.as_str(),
                                    "not reading a symlink that leads outside the include folders (warned once per path; component_errors_total{{error_type=\"symlink_refused\"}})"
                                );
                            }
                            refused_now.insert(path);
                            continue;
                        }
                        Err(Ok(Refusal::Changed)) => continue,
                        Err(Err(e)) => {
                            errors.note(&path, &e);
                            continue;
                        }
                    }
                }
                listing.found.insert(
                    id,
                    Found {
                        path,
                        size: meta.len(),
                    },
                );
            }
        }
        self.refused.keep_only(&refused_now);
        if errors.count > 0 {
            listing.complete = false;
            listing.out_of_descriptors = errors.out_of_descriptors;
            self.listing_failed.increment(1);
            if let Some(held_back) = self.failures.admit() {
                tracing::error!(
                    errors = errors.count,
                    first = errors.first.as_deref().unwrap_or_default(),
                    listings_failed_since_last_message = held_back,
                    "cannot list every matching file; nothing is taken for deleted until a listing succeeds (retried at every glob_interval)"
                );
            }
        }
        listing
    }

    /// Whether the symlink rule lets the reader follow `path` to file `id`.
    fn admit(
        &self,
        path: &Path,
        pattern: usize,
        id: FileId,
        real_bases: &[Option<PathBuf>],
    ) -> Result<(), Result<Refusal, io::Error>> {
        if self.follow == FollowSymlinks::Always {
            return Ok(());
        }
        let real = fs::canonicalize(path).map_err(Err)?;
        // The path may have been swapped between the listing and here: the checked real
        // path must still be the listed file.
        if FileId::of(&fs::metadata(&real).map_err(Err)?) != id {
            return Err(Ok(Refusal::Changed));
        }
        let allowed = match self.follow {
            FollowSymlinks::Always => true,
            FollowSymlinks::WithinInclude => real_bases
                .iter()
                .flatten()
                .any(|base| real.starts_with(base)),
            // No symlink below the base: the real path is the real base plus what the
            // pattern matched.
            FollowSymlinks::Never => match (
                &real_bases[pattern],
                path.strip_prefix(&self.bases[pattern]),
            ) {
                (Some(base), Ok(rest)) => real == base.join(rest),
                _ => false,
            },
        };
        if allowed {
            Ok(())
        } else {
            Err(Ok(Refusal::Symlink { target: real }))
        }
    }
}

/// The errors of one listing; "not found" (or a path through something that is not a
/// folder) is not one: the thing is simply not there.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
    out_of_descriptors: bool,
}

impl Errors {
    fn note(&mut self, path: &Path, error: &io::Error) {
        if matches!(
            error.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            return;
        }
        self.count += 1;
        self.out_of_descriptors |= is_out_of_descriptors(error);
        self.first
            .get_or_insert_with(|| format!("{}: {error}", path.display()));
    }
}

/// True for EMFILE (the process) and ENFILE (the system): out of descriptors.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The folder a pattern lists from: its path up to the first component with a wildcard
/// (`*`, `?`, `[`); the parent of a pattern without any; `.` for a bare relative one.
pub fn base_folder(pattern: &str) -> PathBuf {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut wildcard = false;
    for component in path.components() {
        if let Component::Normal(part) = component
            && part.to_string_lossy().contains(['*', '?', '['])
        {
            wildcard = true;
            break;
        }
        base.push(component);
    }
    if !wildcard {
        base.pop();
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

impl FollowSymlinks {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowSymlinks::WithinInclude => "within_include",
            FollowSymlinks::Always => "always",
            FollowSymlinks::Never => "never",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn the_base_folder_ends_before_the_first_wildcard() {
        assert_eq!(
            base_folder("/var/log/o365/*.ndjson"),
            Path::new("/var/log/o365")
        );
        assert_eq!(base_folder("/var/log/**/a.log"), Path::new("/var/log"));
        assert_eq!(base_folder("/var/log/app.log"), Path::new("/var/log"));
        assert_eq!(base_folder("in/a?.log"), Path::new("in"));
        assert_eq!(base_folder("*.log"), Path::new("."));
        assert_eq!(base_folder("app.log"), Path::new("."));
    }

    fn lister(dir: &Path, follow: FollowSymlinks) -> Lister {
        Lister::new(
            vec![dir.join("logs/*.log").display().to_string()],
            Vec::new(),
            follow,
            Counter::noop(),
            Counter::noop(),
        )
    }

    fn listed(lister: &mut Lister) -> Vec<String> {
        let listing = lister.list(|_| false);
        assert!(listing.complete);
        let mut names: Vec<String> = listing
            .found
            .into_values()
            .filter_map(|f| Some(f.path.file_name()?.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn symlinks_are_followed_as_the_policy_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        fs::create_dir_all(logs.join("sub")).expect("mkdir");
        fs::write(logs.join("plain.log"), "a\n").expect("write");
        fs::write(logs.join("sub/inside.txt"), "b\n").expect("write");
        fs::write(dir.path().join("secret.txt"), "c\n").expect("write");
        symlink(logs.join("sub/inside.txt"), logs.join("inside.log")).expect("link");
        symlink(dir.path().join("secret.txt"), logs.join("outside.log")).expect("link");

        let within = listed(&mut lister(dir.path(), FollowSymlinks::WithinInclude));
        assert_eq!(within, ["inside.log", "plain.log"]);
        let always = listed(&mut lister(dir.path(), FollowSymlinks::Always));
        assert_eq!(always, ["inside.log", "outside.log", "plain.log"]);
        let never = listed(&mut lister(dir.path(), FollowSymlinks::Never));
        assert_eq!(never, ["plain.log"]);
    }

    #[test]
    fn a_base_folder_that_cannot_be_looked_at_makes_the_listing_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A symlink to itself: stat fails with ELOOP, which glob would skip silently.
        symlink(dir.path().join("logs"), dir.path().join("logs")).expect("loop");
        let listing = lister(dir.path(), FollowSymlinks::WithinInclude).list(|_| false);
        assert!(!listing.complete);
        assert!(listing.found.is_empty());

        let missing = tempfile::tempdir().expect("tempdir");
        let listing = lister(missing.path(), FollowSymlinks::WithinInclude).list(|_| false);
        assert!(
            listing.complete,
            "a folder that does not exist holds no file"
        );
    }
}
