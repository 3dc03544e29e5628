/// mimalloc, not glibc's malloc: at 256 streams tbctl allocates and frees a prompt, a request
/// body and a record per request on two threads, and glibc's malloc and free took about a fifth
/// of its CPU there (issue 22's profile); mimalloc's per-thread free lists take a fraction of it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tbctl::cli::main()
}
