//! Reading `policies/` as an OPA bundle, and its version.
//!
//! The layout rules are OPA's, so an operator's `opa test policies/` and
//! `opa eval -b policies/` read the same documents:
//! - every `*.rego` file, anywhere under the directory, is a module;
//! - every `data.json` (or `data.yaml` / `data.yml`) is data, placed under `data`
//!   at its folder's path: `crosswalk/catalog/data.json` → `data.crosswalk.catalog`;
//! - `.manifest` may list `roots`: every package and every data path must lie
//!   under one of them (OPA refuses such a bundle, and so do we);
//! - any other file (`CONTRACT.md`, `MATRIX.md`, ...) is not part of the bundle.
//!
//! One deliberate difference: hidden files and folders (a name starting with `.`,
//! other than `.manifest`) are skipped, so that an editor's lock or swap file next
//! to a policy cannot break a reload.
//!
//! The version is BLAKE3 over the bundle's files — each relative path and its
//! contents, length-prefixed, in path order — so it changes exactly when a file
//! that can change a decision changes, whatever the machine or checkout.

use std::path::{Path, PathBuf};

use super::PolicyError;

/// The `.manifest` file's name.
const MANIFEST: &str = ".manifest";

/// Domain separation for the version hash.
const VERSION_CONTEXT: &[u8] = b"crosswalk policy bundle v1\0";

/// The part of `.manifest` the loader honours.
#[derive(serde::Deserialize)]
struct Manifest {
    roots: Option<Vec<String>>,
}

/// What a bundle file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FileKind {
    Rego,
    /// Data placed at these path segments under `data`.
    Data {
        at: Vec<String>,
        yaml: bool,
    },
    Manifest,
}

/// One file of the bundle, read.
#[derive(Debug, Clone)]
pub(super) struct BundleFile {
    /// Relative to the bundle directory, `/`-separated.
    pub relative: String,
    /// As the operator would type it: the bundle directory joined with `relative`.
    pub path: PathBuf,
    pub contents: String,
    pub kind: FileKind,
}

/// The bundle's files, sorted by relative path.
#[derive(Debug, Clone)]
pub(super) struct Bundle {
    pub files: Vec<BundleFile>,
}

impl Bundle {
    /// Reads every bundle file under `dir`.
    pub fn read(dir: &Path) -> Result<Self, PolicyError> {
        let meta = std::fs::metadata(dir).map_err(|e| PolicyError::io(dir, &e))?;
        if !meta.is_dir() {
            return Err(PolicyError::Bundle {
                dir: dir.to_owned(),
                problem: "is not a directory".to_owned(),
            });
        }
        let mut files = Vec::new();
        walk(dir, dir, &[], &mut files)?;
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        if !files.iter().any(|f| f.kind == FileKind::Rego) {
            return Err(PolicyError::Bundle {
                dir: dir.to_owned(),
                problem: "holds no .rego file".to_owned(),
            });
        }
        Ok(Self { files })
    }

    /// BLAKE3 over the files, hex.
    pub fn version(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(VERSION_CONTEXT);
        for file in &self.files {
            for part in [file.relative.as_bytes(), file.contents.as_bytes()] {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        hasher.finalize().to_hex().to_string()
    }

    /// The manifest's roots, `/`-trimmed; everything (`[""]`) without a manifest
    /// or without `roots`.
    pub fn roots(&self) -> Result<Vec<String>, PolicyError> {
        let Some(file) = self.files.iter().find(|f| f.kind == FileKind::Manifest) else {
            return Ok(vec![String::new()]);
        };
        let manifest: Manifest =
            serde_json::from_str(&file.contents).map_err(|e| PolicyError::File {
                path: file.path.clone(),
                problem: format!("not a bundle manifest: {e}"),
            })?;
        let roots: Vec<String> = manifest.roots.map_or_else(
            || vec![String::new()],
            |roots| {
                roots
                    .iter()
                    .map(|r| r.trim_matches('/').to_owned())
                    .collect()
            },
        );
        for (i, a) in roots.iter().enumerate() {
            for b in &roots[i + 1..] {
                if root_contains(a, b) || root_contains(b, a) {
                    return Err(PolicyError::File {
                        path: file.path.clone(),
                        problem: format!("overlapping roots {a:?} and {b:?}"),
                    });
                }
            }
        }
        Ok(roots)
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    at: &[String],
    files: &mut Vec<BundleFile>,
) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::io(dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PolicyError::io(dir, &e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(PolicyError::File {
                path,
                problem: "the name is not UTF-8".to_owned(),
            });
        };
        if name.starts_with('.') && !(name == MANIFEST && at.is_empty()) {
            continue;
        }
        // `metadata` follows symbolic links, like OPA's loader.
        let meta = std::fs::metadata(&path).map_err(|e| PolicyError::io(&path, &e))?;
        if meta.is_dir() {
            let mut deeper = at.to_vec();
            deeper.push(name);
            walk(root, &path, &deeper, files)?;
            continue;
        }
        #[expect(
            clippy::case_sensitive_file_extension_comparisons,
            reason = "OPA's loader matches `.rego` case-sensitively, and so do we"
        )]
        let kind = match name.as_str() {
            "data.json" => FileKind::Data {
                at: at.to_vec(),
                yaml: false,
            },
            "data.yaml" | "data.yml" => FileKind::Data {
                at: at.to_vec(),
                yaml: true,
            },
            MANIFEST => FileKind::Manifest,
            _ if name.ends_with(".rego") => FileKind::Rego,
            _ => continue,
        };
        let contents = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, &e))?;
        let mut relative = at.join("/");
        if !relative.is_empty() {
            relative.push('/');
        }
        relative.push_str(&name);
        files.push(BundleFile {
            path: root.join(&relative),
            relative,
            contents,
            kind,
        });
    }
    Ok(())
}

/// Whether the `/`-separated `root` contains `path`, segment by segment (the
/// empty root contains everything), as OPA's `RootPathsContain`.
pub(super) fn root_contains(root: &str, path: &str) -> bool {
    if root.is_empty() {
        return true;
    }
    let mut path_segments = path.split('/');
    root.split('/')
        .all(|segment| path_segments.next() == Some(segment))
}

/// Checks a data document placed at `at` against the roots, as OPA does: every
/// path is either under a root or a prefix of one (then only objects may sit
/// there, and their children are checked in turn).
pub(super) fn check_data_roots(
    value: &serde_json::Value,
    at: &mut Vec<String>,
    roots: &[String],
) -> Result<(), String> {
    let path = at.join("/");
    if roots.iter().any(|root| root_contains(root, &path)) {
        return Ok(());
    }
    if let serde_json::Value::Object(map) = value
        && roots.iter().any(|root| root_contains(&path, root))
    {
        for (key, child) in map {
            at.push(key.clone());
            let checked = check_data_roots(child, at, roots);
            at.pop();
            checked?;
        }
        return Ok(());
    }
    Err(format!(
        "the manifest roots {roots:?} do not permit data at /{path}"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(dir: &Path, relative: &str, text: &str) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn reads_bundle_files_only_and_places_data_by_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a/b/x.rego", "package a.b");
        write(dir.path(), "a/catalog/data.json", "{}");
        write(dir.path(), "a/data.yaml", "k: 1");
        write(dir.path(), ".manifest", r#"{"roots": ["a"]}"#);
        write(dir.path(), "README.md", "not a bundle file");
        write(dir.path(), "a/.#x.rego", "an editor's lock file");
        write(dir.path(), ".git/config.rego", "hidden");

        let bundle = Bundle::read(dir.path()).expect("reads");

        let names: Vec<_> = bundle.files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(
            names,
            [
                ".manifest",
                "a/b/x.rego",
                "a/catalog/data.json",
                "a/data.yaml"
            ]
        );
        assert_eq!(
            bundle.files[2].kind,
            FileKind::Data {
                at: vec!["a".into(), "catalog".into()],
                yaml: false
            }
        );
        assert_eq!(bundle.roots().expect("roots"), ["a"]);
    }

    #[test]
    fn the_version_changes_with_any_bundle_file_and_only_with_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "p/x.rego", "package p");
        write(dir.path(), "p/data.json", "{}");
        let version = || Bundle::read(dir.path()).expect("reads").version();
        let first = version();
        assert_eq!(first.len(), 64);
        assert_eq!(version(), first, "stable");

        write(dir.path(), "NOTES.md", "not part of the bundle");
        assert_eq!(version(), first);

        write(dir.path(), "p/data.json", "{ }");
        let second = version();
        assert_ne!(second, first);

        // Moving bytes between a path and its contents changes the version.
        write(dir.path(), "p/y.rego", "");
        let third = version();
        std::fs::remove_file(dir.path().join("p/y.rego")).expect("rm");
        write(dir.path(), "p/y.reg", "o");
        assert_ne!(version(), third);
    }

    #[test]
    fn an_empty_or_missing_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Bundle::read(dir.path()).expect_err("empty");
        assert!(e.to_string().contains("holds no .rego file"), "{e}");
        let e = Bundle::read(&dir.path().join("absent")).expect_err("missing");
        assert!(e.to_string().contains("absent"), "{e}");
    }

    #[test]
    fn roots_are_matched_segment_by_segment() {
        assert!(root_contains("crosswalk", "crosswalk"));
        assert!(root_contains("crosswalk", "crosswalk/catalog"));
        assert!(!root_contains("crosswalk", "crosswalk_test"));
        assert!(root_contains("", "anything"));

        let roots = vec!["crosswalk".to_owned()];
        let ok = check_data_roots(&json!({"crosswalk": {"x": 1}}), &mut vec![], &roots);
        assert!(ok.is_ok());
        let e = check_data_roots(&json!({"other": 1}), &mut vec![], &roots).expect_err("outside");
        assert!(e.contains("/other"), "{e}");
    }
}
