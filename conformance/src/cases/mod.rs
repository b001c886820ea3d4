//! Every case, by area. Each file adds its cases with `cases(&mut v)`.

use crate::case::Case;

mod devices;
mod exec;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod paths;
mod process;
mod resources;
mod seccomp;

/// All cases, in table order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    process::cases(&mut v);
    namespaces::cases(&mut v);
    mounts::cases(&mut v);
    devices::cases(&mut v);
    paths::cases(&mut v);
    resources::cases(&mut v);
    seccomp::cases(&mut v);
    hooks::cases(&mut v);
    lifecycle::cases(&mut v);
    exec::cases(&mut v);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_sections_are_spec_files() {
        let all = super::all();
        let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate case names");
        for c in &all {
            let file = c.section.split('#').next().unwrap_or("");
            assert!(file.ends_with(".md"), "{}: section {:?}", c.name, c.section);
        }
    }
}
