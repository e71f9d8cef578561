//! Compiles the server, which is C, into the binary.

fn main() {
    println!("cargo::rerun-if-changed=src/thread_lean.c");
    cc::Build::new()
        .file("src/thread_lean.c")
        .flag("-std=gnu11")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("thread_lean");
}
