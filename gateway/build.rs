//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! migration files at compile time but does not tell Cargo to watch them, so an
//! added `.sql` file would otherwise be missing from an incremental build.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
