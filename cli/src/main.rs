use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald_cli::local::{Local, PROVIDER_SECRETS, UNSUBSCRIBE_KEY, repo_root};
use std::path::PathBuf;

/// Herald: run the pipeline locally, check templates, read the ledger.
#[derive(Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start moto, create the stack, run every function, send samples, print a report, stop.
    Demo,
    /// Start the same stack and serve it until Ctrl-C.
    Local {
        /// Port for the local AWS endpoint (0: a free one).
        #[arg(long, default_value_t = 0, env = "HERALD_LOCAL_PORT")]
        port: u16,
        /// Port for the local webhook function URL (0: a free one).
        #[arg(long, default_value_t = 0, env = "HERALD_WEBHOOK_PORT")]
        webhook_port: u16,
    },
    /// Template files.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// One message's history, by idempotency key (uses the standard AWS environment).
    Message {
        key: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        table: String,
    },
    /// A campaign's funnel per group (each variant, the holdout, the global control group):
    /// accepted, suppressed by reason, sent, delivered, opened, clicked, bounced, then
    /// conversions and lift when the campaign names a conversion event (scans the ledger
    /// table: an operator command, not for a hot path).
    Funnel {
        campaign: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        table: String,
        /// Where the campaign's definition is, to group its messages (without it: one group).
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        templates_table: Option<String>,
        /// The stack's GlobalControlPercent, to recompute who is in the global control group.
        #[arg(long, env = "HERALD_GLOBAL_CONTROL_PERCENT", default_value_t = 0.0)]
        global_control_percent: f64,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Check every template with the code that renders them.
    Check {
        #[arg(long, default_value = "templates")]
        dir: PathBuf,
        /// SMS segments a message may cost (the SmsMaxSegments parameter of the deployment).
        #[arg(long, default_value_t = 3)]
        max_sms_segments: usize,
    },
    /// Upload every template to the templates table (uses the standard AWS environment).
    Push {
        #[arg(long, default_value = "templates")]
        dir: PathBuf,
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        table: String,
    },
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            init_logs("warn");
            herald::metrics::disable();
            let local = Local::up(&repo_root(), 0, "herald-").await?;
            let report = herald_cli::demo::run(&local).await;
            local.runner.stop().await;
            println!("{}", report?);
        }
        Command::Local { port, webhook_port } => {
            init_logs("info");
            let local = Local::up_with_web_port(&repo_root(), port, webhook_port, "herald-").await?;
            println!("AWS_ENDPOINT_URL={}", local.moto.endpoint);
            println!("AWS_REGION=us-east-1");
            println!("HERALD_INGEST_QUEUE_URL={}", local.stack.queue("IngestQueue")?.url);
            println!("HERALD_LEDGER_TABLE={}", local.stack.tables.get("LedgerTable").context("LedgerTable")?);
            println!("HERALD_TEMPLATES_TABLE={}", local.stack.tables.get("TemplatesTable").context("TemplatesTable")?);
            println!("HERALD_WEBHOOK_URL={}", local.web.url("WebhooksFunction").context("WebhooksFunction URL")?);
            // This run's secrets, read back from the local Secrets Manager, so a developer can
            // sign unsubscribe links and provider reports (and add a provider to the secret).
            for (secret, var) in
                [(UNSUBSCRIBE_KEY, "HERALD_UNSUBSCRIBE_KEY"), (PROVIDER_SECRETS, "HERALD_WEBHOOK_SECRETS")]
            {
                println!("{var}={}", local.stack.secret_value(&local.sdk, secret).await?);
            }
            println!("HERALD_WEBHOOK_SECRETS_SECRET={}", local.stack.secret(PROVIDER_SECRETS)?);
            println!("# Herald is running; publish to the ingest queue (any credentials work). Ctrl-C stops it.");
            tokio::signal::ctrl_c().await?;
            local.runner.stop().await;
        }
        Command::Templates { command: TemplatesCommand::Check { dir, max_sms_segments } } => {
            init_logs("warn");
            let templates = herald_cli::templates::load_dir(&dir)?;
            let campaigns = herald_cli::templates::load_campaigns(&dir.with_file_name("campaigns"))?;
            let limits = herald::domain::template::Limits { max_sms_segments, ..Default::default() };
            let problems = herald_cli::templates::check_all(&templates, &limits);
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problem(s) in {} template(s)", problems.len(), templates.len());
            }
            println!("{} template(s) and {} campaign(s) checked, no problems", templates.len(), campaigns.len());
        }
        Command::Templates { command: TemplatesCommand::Push { dir, table } } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let store = herald::aws::dynamodb::DynamoTemplates::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
                std::time::Duration::ZERO,
            );
            for t in herald_cli::templates::load_dir(&dir)? {
                store.put(&t.doc, chrono::Utc::now()).await?;
                println!("pushed {} v{}", t.doc.name, t.doc.version);
            }
            for c in herald_cli::templates::load_campaigns(&dir.with_file_name("campaigns"))? {
                store.put_campaign(&c, chrono::Utc::now()).await?;
                println!("pushed campaign {}", c.name);
            }
        }
        Command::Message { key, table } => {
            init_logs("warn");
            use herald::ports::Ledger;
            let sdk = herald::aws::sdk_config().await;
            let ledger = herald::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            let id = herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(key)?);
            let entry = ledger.get(&id).await?.context("no such message in the ledger")?;
            println!(
                "{} {} status={} channel={}",
                entry.id,
                entry.idempotency_key,
                entry.status,
                entry.channel.unwrap_or_default()
            );
            if let Some(c) = &entry.conversion {
                let value = c.value.map(|v| format!(" value={v}")).unwrap_or_default();
                println!("  converted: {} at {}{value}", c.event, c.at);
            }
            for h in entry.history {
                println!(
                    "  {} {} {} {} {}",
                    h.at,
                    h.status,
                    h.channel.unwrap_or_default(),
                    h.reason.unwrap_or_default(),
                    h.detail.unwrap_or_default()
                );
            }
        }
        Command::Funnel { campaign, table, templates_table, global_control_percent } => {
            init_logs("warn");
            let global =
                herald::domain::campaign::GlobalControl::new(global_control_percent).map_err(anyhow::Error::msg)?;
            let sdk = herald::aws::sdk_config().await;
            let report =
                herald_cli::funnel::report(&sdk, &table, templates_table.as_deref(), &campaign, global).await?;
            println!("{report}");
        }
    }
    Ok(())
}
