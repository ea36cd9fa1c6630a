use clap::Parser;
use replayscope::app::{self, config::ReplayConfig, config::defaults, exit};
use replayscope::cli::{Cli, Command, LogFormat};

fn main() {
    // color-eyre reports panics; errors are printed as one line (`exit::one_line`), so they
    // take eyre's own handler, which captures a backtrace (under RUST_BACKTRACE) without
    // resolving its symbols: color-eyre's resolves them when the error is made, which costs
    // 0.4 s and 170 MiB of debug info for every failed command.
    let (panic_hook, _) = color_eyre::config::HookBuilder::default().into_hooks();
    panic_hook.install();
    if let Err(e) =
        color_eyre::eyre::set_hook(Box::new(color_eyre::eyre::DefaultHandler::default_with))
    {
        eprintln!("replayscope: cannot install error handler: {e}");
    }
    let cli = Cli::parse();
    // The inspector owns the terminal: its logs go to a file.
    let log_file = cli
        .log_file
        .clone()
        .or_else(|| app::uses_terminal(&cli).then(defaults::log_file));
    let filter = cli
        .log
        .clone()
        .unwrap_or_else(|| app::default_log_filter(&cli).to_string());
    let format = cli.log_format.unwrap_or_else(|| match &cli.command {
        Some(Command::Play(a)) => a
            .config
            .as_deref()
            .and_then(ReplayConfig::peek_log_format)
            .unwrap_or(LogFormat::Text),
        _ => LogFormat::Text,
    });
    let _guard = match replayscope::logging::init(&filter, log_file.as_deref(), format.into()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: cannot open log file: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    // The commands whose output is a stream to stdout: a reader that closes the pipe
    // (`… | head`) is not their failure (play handles it itself, with its report).
    let writes_stdout = matches!(
        &cli.command,
        Some(
            Command::Info(_)
                | Command::Export(_)
                | Command::Verify(_)
                | Command::History(_)
                | Command::Search(_)
                | Command::State(_)
        )
    );
    if let Err(err) = app::run(cli) {
        if writes_stdout && exit::reader_went_away(&err) {
            std::process::exit(exit::OK);
        }
        eprintln!("error: {}", exit::one_line(&err));
        std::process::exit(exit::exit_code(&err));
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
