//! How the data directory's files are made: private to the user who runs Spaceport (folders
//! 0700, the database and every blob 0600: inputs and results are users' data, and the
//! database holds webhook logs and run tokens' subjects), and durable (a new folder is fsynced
//! into its parent, so a power cut after a write was acknowledged cannot lose the folder the
//! file was renamed into). A data directory made looser by hand is named at start, not changed.

use std::path::{Path, PathBuf};

use spaceport_core::Error;

/// The mode of the data directory's folders.
pub const DIR_MODE: u32 = 0o700;
/// The mode of the database and of every blob.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each 0700 and fsynced into its parent.
pub fn private_dir_all(dir: &Path) -> Result<(), Error> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    for d in missing.iter().rev() {
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
        match b.create(d) {
            Ok(()) => {}
            // Another writer made it meanwhile: theirs to sync.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::storage(format!("creating {}", d.display()), e)),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)
                .map_err(|e| Error::storage(format!("syncing {}", parent.display()), e))?;
        }
    }
    Ok(())
}

/// Makes the new file at `path` private (0600) before anything is written to it.
pub fn create_private_file(path: &Path) -> Result<(), Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)
        .map(drop)
        .map_err(|e| Error::storage(format!("creating {}", path.display()), e))
}

/// Fsyncs a folder, so the entries just made in it (a file renamed in, a folder) are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What in the data directory others may read or write: the folder itself, the database (and
/// its WAL), the blob folders and the signing key, each named with its mode.
pub fn loose_modes(data_dir: &Path) -> Vec<String> {
    let mut out = vec![];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let paths = [
            data_dir.to_path_buf(),
            data_dir.join("spaceport.db"),
            data_dir.join("spaceport.db-wal"),
            data_dir.join("blobs"),
            data_dir.join("blobs/objects"),
            data_dir.join("keys"),
            data_dir.join("keys/blob-signing.key"),
        ];
        for p in paths {
            if let Ok(meta) = std::fs::metadata(&p) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push(format!(
                        "{} is mode {mode:04o}: other users may read it (chmod {} it)",
                        p.display(),
                        if meta.is_dir() { "700" } else { "600" }
                    ));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = data_dir;
    out
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use futures::StreamExt;
    use spaceport_core::ports::BlobStore;

    use super::*;
    use crate::LocalStack;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_data_dir_is_private_and_looser_modes_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a/new/data");
        let stack = LocalStack::open(&data, "http://127.0.0.1").unwrap();
        // Larger than objects kept inline in the database, so it is a file.
        let body =
            futures::stream::once(async { Ok(bytes::Bytes::from(vec![7u8; 200 * 1024])) }).boxed();
        stack
            .blobs
            .put(
                "runs/run_x/artifacts/a/a.bin",
                "application/octet-stream",
                body,
            )
            .await
            .unwrap();
        for dir in [
            tmp.path().join("a"),
            data.clone(),
            data.join("blobs"),
            data.join("blobs/objects"),
            data.join("keys"),
        ] {
            assert_eq!(mode(&dir), DIR_MODE, "{}", dir.display());
        }
        assert_eq!(mode(&data.join("spaceport.db")), FILE_MODE);
        let mut files = vec![];
        let mut todo = vec![data.join("blobs/objects")];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    assert_eq!(mode(&p), DIR_MODE, "{}", p.display());
                    todo.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(mode(&files[0]), FILE_MODE, "{}", files[0].display());
        assert_eq!(loose_modes(&data), Vec::<String>::new());

        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            data.join("spaceport.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let loose = loose_modes(&data);
        assert_eq!(loose.len(), 2, "{loose:?}");
        assert!(
            loose[0].contains("mode 0755") && loose[0].contains("chmod 700"),
            "{loose:?}"
        );
        assert!(loose[1].contains("spaceport.db is mode 0644"), "{loose:?}");
    }
}
