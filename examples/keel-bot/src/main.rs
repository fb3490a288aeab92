//! keel-bot: posts keel approval requests to Slack and takes votes. See the library docs.

use clap::Parser;
use keel_bot::{Bot, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let listen = config.listen;
    let voters = config.server_voters("<delegate name>");
    let bot = match Bot::new(config) {
        Ok(bot) => bot,
        Err(e) => {
            eprintln!("keel-bot: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("keel-bot: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(%listen, "keel-bot serving /slack/commands and /slack/interactions");
    tracing::info!(
        "votes go to the keel API as <team>/<user>; its KEEL_API_DELEGATE_VOTERS should read {voters}"
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match bot.run(listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-bot: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
