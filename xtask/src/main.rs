fn main() -> anyhow::Result<()> {
    xtask::main()
}
