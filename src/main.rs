use clap::Parser;
use replayscope::cli::Cli;
use replayscope::commands;

fn main() {
    if let Err(e) = color_eyre::install() {
        eprintln!("replayscope: cannot install error handler: {e}");
    }
    let cli = Cli::parse();
    // The inspector owns the terminal: its logs go to a file.
    let log_file = cli.log_file.clone().or_else(|| {
        commands::uses_terminal(&cli).then(|| std::env::temp_dir().join("replayscope.log"))
    });
    let filter = cli
        .log
        .clone()
        .unwrap_or_else(|| commands::default_log_filter(&cli).to_string());
    let format = cli.log_format.unwrap_or_else(|| match &cli.command {
        Some(replayscope::cli::Command::Play(a)) => a
            .config
            .as_deref()
            .and_then(commands::config::ReplayConfig::peek_log_format)
            .unwrap_or(replayscope::cli::LogFormat::Text),
        _ => replayscope::cli::LogFormat::Text,
    });
    let _guard = match replayscope::logging::init(&filter, log_file.as_deref(), format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: cannot open log file: {e}");
            std::process::exit(commands::exit::USAGE);
        }
    };
    if let Err(err) = commands::run(cli) {
        let code = commands::exit_code(&err);
        let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", dedup_chain(&chain));
        std::process::exit(code);
    }
}

/// Joins an error chain into one line, dropping causes already quoted by their parent.
fn dedup_chain(chain: &[String]) -> String {
    let mut line = String::new();
    for c in chain {
        if !line.contains(c.as_str()) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(c);
        }
    }
    line
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
