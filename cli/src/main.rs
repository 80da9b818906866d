use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald_cli::local::{INBOX_TOKEN_KEY, Local, PROVIDER_SECRETS, UNSUBSCRIBE_KEY, repo_root};
use std::path::PathBuf;

/// Herald: run the pipeline locally, check templates, read the ledger.
#[derive(Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Segment files, and a pushed segment's audience.
    Segments {
        #[command(subcommand)]
        command: SegmentsCommand,
    },
    /// Journey files.
    Journeys {
        #[command(subcommand)]
        command: JourneysCommand,
    },
    /// A pushed journey.
    Journey {
        #[command(subcommand)]
        command: JourneyCommand,
    },
    /// The preference center's topics file (`topics.toml`).
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// The preference center: a signed link to a person's page, for support staff.
    Preferences {
        #[command(subcommand)]
        command: PreferencesCommand,
    },
    /// One message's history, by idempotency key (uses the standard AWS environment).
    Message {
        key: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        table: String,
    },
    /// The in-app inbox: a user token (support, the demo) and a person's messages through the API.
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Broadcasts: send a campaign to a segment, pause, resume or cancel it, follow it.
    Broadcast {
        #[command(subcommand)]
        command: BroadcastCommand,
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
    /// Send a template through a stack to a test address (email, phone number or push token),
    /// marked `test` in the ledger: exempt from caps, never from suppression
    /// (docs/testing-sends.md; uses the standard AWS environment).
    SendTest {
        template: String,
        /// An email address, a phone number (E.164) or a push token.
        #[arg(long)]
        to: String,
        /// email, sms or push (default: read from --to).
        #[arg(long, value_parser = json_enum::<herald::domain::Channel>)]
        channel: Option<herald::domain::Channel>,
        #[arg(long)]
        locale: Option<String>,
        /// A JSON object of template data (default: the template's [example] in --dir, if there).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "templates")]
        dir: PathBuf,
        #[arg(long, default_value = "transactional", value_parser = json_enum::<herald::contract::Kind>)]
        kind: herald::contract::Kind,
        #[arg(long)]
        topic: Option<String>,
        /// A push token's platform: apns, apns_sandbox or fcm.
        #[arg(long, value_parser = json_enum::<herald::domain::Platform>)]
        platform: Option<herald::domain::Platform>,
        #[arg(long, env = "HERALD_STACK", default_value = "herald")]
        stack: String,
    },
    /// A dead-letter queue as Herald sees it, and moving its messages back (uses the standard
    /// AWS environment; the queue is one of ingest, eligibility, push, email, sms, inbox,
    /// receipts, broadcast, digest, journey).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Bring people, consents and push tokens (CSV, NDJSON, a Pinpoint endpoint export), and
    /// Pinpoint templates and settings, into Herald (see docs/import.md).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Publish a file of people as ingest commands (upsert_recipient, set_consent,
    /// register_push_token) on the ingest queue, ten per SendMessageBatch. Rows ingest would
    /// refuse are listed with the reason in the report, never sent.
    Recipients {
        file: PathBuf,
        /// The ingest queue's URL (not needed for --dry-run).
        #[arg(long, env = "HERALD_INGEST_QUEUE_URL", required_unless_present = "dry_run")]
        queue: Option<String>,
        /// csv, ndjson or pinpoint; guessed from the file's name (.csv, .ndjson/.jsonl/.json, .gz).
        #[arg(long, value_enum)]
        format: Option<herald_cli::import::Format>,
        /// Check every row and write the report, send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Commands per second (0: as fast as SQS takes them).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Continue an import that stopped, from its checkpoint.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Ignore a checkpoint and import from the first row.
        #[arg(long)]
        restart: bool,
        /// The refused rows, one JSON object a line (default: FILE.refused.ndjson).
        #[arg(long)]
        report: Option<PathBuf>,
        /// The checkpoint (default: FILE.import-state.json).
        #[arg(long)]
        state: Option<PathBuf>,
        /// The consent source for consents that name none.
        #[arg(long, default_value = "import")]
        consent_source: String,
        /// Quiet hours (`22:00-07:00`) for every person whose row gives none (Pinpoint's QuietTime).
        #[arg(long)]
        quiet_hours: Option<String>,
        /// Pinpoint: record `OptOut: NONE` as an opt-in (source `pinpoint`). Without it, only
        /// opt-outs are recorded, and marketing waits for an explicit opt-in.
        #[arg(long)]
        opt_out_none_grants: bool,
    },
    /// Convert Pinpoint GetEmailTemplate / GetSmsTemplate / GetPushTemplate JSON to Herald
    /// templates, and print what GetApplicationSettings' QuietTime and Limits map to.
    PinpointTemplates {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "templates")]
        out: PathBuf,
        /// The locale the parts go under (Pinpoint templates have none).
        #[arg(long, default_value = "en")]
        locale: String,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Each message: its kind, its Herald message id, recipient id and template, and the ledger's
    /// status for it (never an address or a token). The messages stay where they are.
    List {
        queue: String,
        /// The stack's name (the local stack's is `herald`).
        #[arg(long, env = "HERALD_STACK", default_value = "herald")]
        stack: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        ledger_table: String,
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Send the messages back to the queue they came from (then delete them from the
    /// dead-letter queue); prints what was moved, as `list` does.
    Redrive {
        queue: String,
        #[arg(long, env = "HERALD_STACK", default_value = "herald")]
        stack: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        ledger_table: String,
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum BroadcastCommand {
    /// Start a broadcast: checks the command and puts it on the ingest queue, as a producer would.
    Send {
        campaign: String,
        #[arg(long)]
        segment: String,
        /// Absent: each of the campaign's variants names its template.
        #[arg(long)]
        template: Option<String>,
        /// Candidate channels in order (push,email,sms); absent: the segment's.
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        /// Messages per second handed to the pipeline, across all fan-out workers.
        #[arg(long)]
        rate: u32,
        /// When to start (RFC 3339); absent: now.
        #[arg(long)]
        send_at: Option<String>,
        /// Deliver at this time of day (HH:MM) in each recipient's zone.
        #[arg(long)]
        local_time: Option<String>,
        /// The zone for people without one (with --local-time).
        #[arg(long)]
        default_timezone: Option<String>,
        /// Nothing is delivered after this instant (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// A JSON file of data every message's template gets.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "marketing")]
        kind: String,
        #[arg(long, env = "HERALD_INGEST_QUEUE_URL")]
        queue: String,
    },
    /// Scanned, matched, queued, sent, suppressed by reason, and what remains.
    Status {
        campaign: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        table: String,
    },
    /// Stop the fan-out where it is (messages already queued wait at ingest).
    Pause {
        campaign: String,
        #[arg(long, env = "HERALD_INGEST_QUEUE_URL")]
        queue: String,
    },
    /// Go on from where it was paused, at its rate.
    Resume {
        campaign: String,
        #[arg(long, env = "HERALD_INGEST_QUEUE_URL")]
        queue: String,
    },
    /// Stop it for good: nothing more is sent.
    Cancel {
        campaign: String,
        #[arg(long, env = "HERALD_INGEST_QUEUE_URL")]
        queue: String,
    },
}

#[derive(Subcommand)]
enum InboxCommand {
    /// Mint a user token for a recipient, signed with the stack's inbox token key (read from
    /// Secrets Manager with the standard AWS environment). Prints the token only.
    Token {
        recipient: String,
        /// How long it is valid: 30s, 15m, 1h, 7d (at most 30 days).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The InboxTokenKeyArn output (`herald local` prints it).
        #[arg(long, env = "HERALD_INBOX_TOKEN_SECRET")]
        secret: String,
    },
    /// A recipient's messages as the team's app gets them: counts, then newest first.
    List {
        recipient: String,
        /// all, unread, unseen or archived.
        #[arg(long, default_value = "all")]
        status: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The InboxUrl output (`herald local` prints it).
        #[arg(long, env = "HERALD_INBOX_URL")]
        url: String,
        #[arg(long, env = "HERALD_INBOX_TOKEN_SECRET")]
        secret: String,
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
    /// Print exactly what a channel's dispatch would hand its provider for a template (built
    /// by the same code): the email as SES gets it, the SMS with its encoding and segments,
    /// the SNS push message with its APNs and FCM payloads, the inbox item.
    Preview {
        name: String,
        #[arg(long, value_parser = json_enum::<herald::domain::Channel>)]
        channel: herald::domain::Channel,
        #[arg(long)]
        locale: Option<String>,
        /// A JSON object of template data (default: the template's [example]).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Push: one platform (default: apns and fcm).
        #[arg(long, value_parser = json_enum::<herald::domain::Platform>)]
        platform: Option<herald::domain::Platform>,
        #[arg(long, default_value = "transactional", value_parser = json_enum::<herald::contract::Kind>)]
        kind: herald::contract::Kind,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        /// The recipient id the template sees (`recipient.id`).
        #[arg(long, default_value = herald_cli::preview::DEFAULT_RECIPIENT)]
        recipient: String,
        /// The idempotency key of the send to match (its message id is in the payloads).
        #[arg(long, default_value = herald_cli::preview::DEFAULT_KEY)]
        key: String,
        /// The stack's sender (SenderAddress), when the template names none.
        #[arg(long, env = "HERALD_FROM_ADDRESS")]
        from: Option<String>,
        #[arg(long, default_value = "templates")]
        dir: PathBuf,
        /// Print JSON (every string exactly as the provider gets it) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Upload every template to the templates table, with the campaigns, segments and profile
    /// schema beside the folder (uses the standard AWS environment).
    Push {
        #[arg(long, default_value = "templates")]
        dir: PathBuf,
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        table: String,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Check the topics: known channels, an English name, no duplicates.
    Check {
        #[arg(long, default_value = "topics.toml")]
        file: PathBuf,
    },
    /// Store the topics in the templates table, where the webhook function reads them
    /// (within a minute); uses the standard AWS environment.
    Push {
        #[arg(long, default_value = "topics.toml")]
        file: PathBuf,
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        table: String,
    },
}

#[derive(Subcommand)]
enum PreferencesCommand {
    /// Print a signed link to a person's preference center. Whoever holds it can change
    /// that person's marketing preferences until it expires: send it to the person only.
    Link {
        recipient: String,
        /// How long it works: `30m`, `12h`, `7d` (at most 90d).
        #[arg(long, default_value = herald_cli::preferences::DEFAULT_TTL)]
        ttl: String,
        /// The webhook function's URL (the stack's WebhookUrl output; `herald local` prints it).
        #[arg(long, env = "HERALD_WEBHOOK_URL")]
        url: String,
        /// The stack's UnsubscribeKey secret (ARN or name), read with the standard AWS environment.
        #[arg(long, env = "HERALD_UNSUBSCRIBE_KEY_SECRET")]
        key_secret: Option<String>,
    },
}

#[derive(Subcommand)]
enum JourneysCommand {
    /// Check every journey: its steps and their graph, the templates it sends (in the
    /// templates folder), the profile attributes its branches read.
    Check {
        #[arg(long, default_value = "journeys")]
        dir: PathBuf,
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
        #[arg(long, default_value = "profile.toml")]
        profile: PathBuf,
    },
}

#[derive(Subcommand)]
enum JourneyCommand {
    /// People at each step, completed, exited by condition, and each send step's funnel
    /// (reads the journey's partition and each person's messages: an operator command;
    /// uses the standard AWS environment).
    Status {
        name: String,
        #[arg(long, env = "HERALD_JOURNEYS_TABLE")]
        table: String,
        #[arg(long, env = "HERALD_LEDGER_TABLE")]
        ledger_table: String,
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        templates_table: String,
    },
}

#[derive(Subcommand)]
enum SegmentsCommand {
    /// Check every segment against the profile schema (declared attributes, operators,
    /// exclusions).
    Check {
        #[arg(long, default_value = "segments")]
        dir: PathBuf,
        #[arg(long, default_value = "profile.toml")]
        profile: PathBuf,
    },
    /// How many recipients a pushed segment matches now, why the others are missed, and a
    /// sample of matched recipient ids (scans the recipients table in parallel: an operator
    /// command; uses the standard AWS environment). Sends nothing.
    Count {
        segment: String,
        /// How many matched recipient ids to print.
        #[arg(long, default_value_t = 10)]
        sample: usize,
        /// Parallel scan segments.
        #[arg(long, default_value_t = 4)]
        scan_segments: u32,
        /// Items read per scan request.
        #[arg(long, default_value_t = 500)]
        page_size: u32,
        #[arg(long, env = "HERALD_RECIPIENTS_TABLE")]
        recipients_table: String,
        #[arg(long, env = "HERALD_TEMPLATES_TABLE")]
        templates_table: String,
    },
}

/// A value of one of Herald's enums by its name in the contract (`email`, `apns_sandbox`).
fn json_enum<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|e| e.to_string())
}

/// A JSON object from a file (template data).
fn read_data(path: &std::path::Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JSON object", path.display()))
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
            let outcome = herald_cli::demo::run(&local).await;
            local.runner.stop().await;
            let outcome = outcome?;
            println!("{}", outcome.report);
            if outcome.differences > 0 {
                anyhow::bail!(
                    "{} row(s) of the demo differ from what they should be (DIFFERS above)",
                    outcome.differences
                );
            }
        }
        Command::Local { port, webhook_port } => {
            init_logs("info");
            let local = Local::up_with_web_port(&repo_root(), port, webhook_port, "herald-").await?;
            println!("AWS_ENDPOINT_URL={}", local.moto.endpoint);
            println!("AWS_REGION=us-east-1");
            println!("HERALD_INGEST_QUEUE_URL={}", local.stack.queue("IngestQueue")?.url);
            println!("HERALD_LEDGER_TABLE={}", local.stack.tables.get("LedgerTable").context("LedgerTable")?);
            // For `herald segments count`, `herald templates push` and `herald journey status`
            // against this stack.
            for (table, var) in [
                ("RecipientsTable", "HERALD_RECIPIENTS_TABLE"),
                ("TemplatesTable", "HERALD_TEMPLATES_TABLE"),
                ("JourneysTable", "HERALD_JOURNEYS_TABLE"),
            ] {
                println!("{var}={}", local.stack.tables.get(table).context(table)?);
            }
            println!("HERALD_WEBHOOK_URL={}", local.web.url("WebhooksFunction").context("WebhooksFunction URL")?);
            // This run's secrets, read back from the local Secrets Manager, so a developer can
            // sign unsubscribe links and provider reports (and add a provider to the secret).
            for (secret, var) in
                [(UNSUBSCRIBE_KEY, "HERALD_UNSUBSCRIBE_KEY"), (PROVIDER_SECRETS, "HERALD_WEBHOOK_SECRETS")]
            {
                println!("{var}={}", local.stack.secret_value(&local.sdk, secret).await?);
            }
            println!("HERALD_WEBHOOK_SECRETS_SECRET={}", local.stack.secret(PROVIDER_SECRETS)?);
            // For `herald inbox token` and `herald inbox list`.
            println!("HERALD_INBOX_URL={}", local.web.url("InboxFunction").context("InboxFunction URL")?);
            println!("HERALD_INBOX_TOKEN_SECRET={}", local.stack.secret(INBOX_TOKEN_KEY)?);
            // Add a rule on it (`aws events put-rule --event-bus-name ...`) to see the event stream.
            if let Some((bus, _)) = local.stack.buses.get("EventBus") {
                println!("HERALD_EVENT_BUS={bus}");
            }
            println!("# Herald is running; publish to the ingest queue (any credentials work). Ctrl-C stops it.");
            tokio::signal::ctrl_c().await?;
            local.runner.stop().await;
        }
        Command::Templates { command: TemplatesCommand::Check { dir, max_sms_segments } } => {
            init_logs("warn");
            let templates = herald_cli::templates::load_dir(&dir)?;
            let campaigns = herald_cli::templates::load_campaigns(&dir.with_file_name("campaigns"))?;
            let schema = herald_cli::segments::load_profile(&dir.with_file_name("profile.toml"))?;
            let limits = herald::domain::template::Limits { max_sms_segments, ..Default::default() };
            let mut problems = herald_cli::templates::check_all(&templates, &limits);
            problems.extend(herald_cli::templates::check_profile_all(&templates, &schema));
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problem(s) in {} template(s)", problems.len(), templates.len());
            }
            println!("{} template(s) and {} campaign(s) checked, no problems", templates.len(), campaigns.len());
        }
        Command::Templates {
            command:
                TemplatesCommand::Preview {
                    name,
                    channel,
                    locale,
                    data,
                    platform,
                    kind,
                    topic,
                    campaign,
                    recipient,
                    key,
                    from,
                    dir,
                    json,
                },
        } => {
            init_logs("warn");
            let template = herald_cli::templates::load(&dir.join(format!("{name}.toml")))?;
            let req = herald_cli::preview::Request {
                channel,
                locale,
                data: data.as_deref().map(read_data).transpose()?,
                kind,
                topic,
                campaign,
                platforms: platform.into_iter().collect(),
                recipient,
                idempotency_key: key,
                from,
            };
            let preview = herald_cli::preview::preview(&template, &req)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&preview)?),
                false => print!("{}", herald_cli::preview::render_text(&preview)),
            }
        }
        Command::SendTest { template, to, channel, locale, data, dir, kind, topic, platform, stack } => {
            init_logs("warn");
            let data = match data {
                Some(path) => read_data(&path)?,
                None => {
                    let local = dir.join(format!("{template}.toml"));
                    match local.exists() {
                        true => herald_cli::templates::load(&local)?.doc.example.clone(),
                        false => serde_json::Map::new(),
                    }
                }
            };
            let test = herald_cli::sendtest::SendTest { template, to, channel, locale, data, kind, topic, platform };
            let key = format!("herald-test-{}-{}", test.template, chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
            let sdk = herald::aws::sdk_config().await;
            let sent = herald_cli::sendtest::send(&aws_sdk_sqs::Client::new(&sdk), &stack, &test, &key).await?;
            println!(
                "published a test send of {} on {} to recipient {} ({})",
                test.template,
                sent.channel.as_str(),
                sent.recipient,
                sent.queue_url
            );
            println!("follow it: herald message {}", sent.idempotency_key);
        }
        Command::Templates { command: TemplatesCommand::Push { dir, table } } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let store = herald::aws::dynamodb::DynamoTemplates::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
                std::time::Duration::ZERO,
            );
            for line in herald_cli::templates::push_all(&store, &dir, chrono::Utc::now()).await? {
                println!("{line}");
            }
        }
        Command::Topics { command: TopicsCommand::Check { file } } => {
            init_logs("warn");
            match herald_cli::preferences::check_topics(&file, false)? {
                Ok(topics) => println!("{} topic(s) checked, no problems", topics.topics.len()),
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    anyhow::bail!("{} problem(s) in {}", problems.len(), file.display());
                }
            }
        }
        Command::Topics { command: TopicsCommand::Push { file, table } } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let store = herald::aws::dynamodb::DynamoTemplates::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
                std::time::Duration::ZERO,
            );
            println!("{}", herald_cli::preferences::push_topics(&store, &file, chrono::Utc::now()).await?);
        }
        Command::Preferences { command: PreferencesCommand::Link { recipient, ttl, url, key_secret } } => {
            init_logs("warn");
            let value = std::env::var("HERALD_UNSUBSCRIBE_KEY").ok().filter(|v| !v.is_empty());
            let key = herald_cli::preferences::signing_key(value, key_secret).await?;
            let (link, until) = herald_cli::preferences::mint_link(&key, &url, &recipient, &ttl, chrono::Utc::now())?;
            println!("{link}");
            eprintln!("works until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        Command::Segments { command: SegmentsCommand::Check { dir, profile } } => {
            init_logs("warn");
            let (docs, schema, problems) = herald_cli::segments::check(&dir, &profile)?;
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problem(s) in {} segment(s)", problems.len(), docs.len());
            }
            println!(
                "{} segment(s) checked against {} declared attribute(s), no problems",
                docs.len(),
                schema.attributes.len()
            );
        }
        Command::Segments {
            command:
                SegmentsCommand::Count { segment, sample, scan_segments, page_size, recipients_table, templates_table },
        } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
            let store = herald::aws::dynamodb::DynamoTemplates::new(
                dynamodb.clone(),
                templates_table,
                std::time::Duration::ZERO,
            );
            let name = herald::domain::SegmentName::new(segment)?;
            let audience = herald::ports::resolve_audience(&store, &name).await?.map_err(anyhow::Error::msg)?;
            let recipients = herald::aws::dynamodb::DynamoRecipients::new(dynamodb, recipients_table);
            let count = herald_cli::segments::count(
                &recipients,
                &audience,
                chrono::Utc::now(),
                scan_segments,
                page_size,
                sample,
            )
            .await?;
            println!("{count}");
        }
        Command::Journeys { command: JourneysCommand::Check { dir, templates, profile } } => {
            init_logs("warn");
            let names = herald_cli::templates::load_dir(&templates)?.iter().map(|t| t.name().clone()).collect();
            let schema = herald_cli::segments::load_profile(&profile)?;
            let (docs, problems) = herald_cli::journeys::check(&dir, &names, &schema)?;
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problem(s) in {} journey(s)", problems.len(), docs.len());
            }
            println!("{} journey(s) checked, no problems", docs.len());
        }
        Command::Journey { command: JourneyCommand::Status { name, table, ledger_table, templates_table } } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
            let name = herald::domain::journey::JourneyName::new(name).map_err(anyhow::Error::msg)?;
            let report = herald_cli::journeys::status(
                &herald::aws::dynamodb::DynamoJourneys::new(dynamodb.clone(), table),
                &herald::aws::dynamodb::DynamoTemplates::new(
                    dynamodb.clone(),
                    templates_table,
                    std::time::Duration::from_secs(600),
                ),
                &herald::aws::dynamodb::DynamoLedger::new(dynamodb, ledger_table),
                &name,
            )
            .await?;
            print!("{report}");
        }
        Command::Message { key, table } => {
            init_logs("warn");
            use herald::ports::Ledger;
            let sdk = herald::aws::sdk_config().await;
            let ledger = herald::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            let id = herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(key)?);
            let entry = ledger.get(&id).await?.context("no such message in the ledger")?;
            println!(
                "{} {} status={} channel={}{}",
                entry.id,
                entry.idempotency_key,
                entry.status,
                entry.channel.unwrap_or_default(),
                if entry.test { " test=true" } else { "" }
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
        Command::Broadcast { command } => {
            init_logs("warn");
            broadcast(command).await?;
        }
        Command::Dlq { command } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let ledger_of =
                |table: &str| herald::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            match command {
                DlqCommand::List { queue, stack, ledger_table, max } => {
                    let pair = herald_cli::dlq::resolve(&sqs, &stack, &queue).await?;
                    let listed = herald_cli::dlq::list(&sqs, &ledger_of(&ledger_table), &pair, max).await?;
                    println!(
                        "{} message(s) in the {} dead-letter queue{}",
                        listed.len(),
                        pair.name,
                        if listed.len() == max { " (or more)" } else { "" }
                    );
                    print!("{}", herald_cli::dlq::render(&listed));
                }
                DlqCommand::Redrive { queue, stack, ledger_table, max } => {
                    let pair = herald_cli::dlq::resolve(&sqs, &stack, &queue).await?;
                    let done = herald_cli::dlq::redrive(&sqs, &ledger_of(&ledger_table), &pair, max).await?;
                    println!(
                        "moved {} message(s) from the {} dead-letter queue back to its queue",
                        done.moved.len(),
                        pair.name
                    );
                    print!("{}", herald_cli::dlq::render(&done.moved));
                    if done.not_sent > 0 {
                        println!("{} not sent (the queue refused them): still in the dead-letter queue", done.not_sent);
                    }
                    if done.not_deleted > 0 {
                        println!(
                            "{} sent but not deleted: they will show again here (Herald ignores the second copy)",
                            done.not_deleted
                        );
                    }
                }
            }
        }
        Command::Import { command } => {
            init_logs("warn");
            import(command).await?;
        }
        Command::Inbox { command: InboxCommand::Token { recipient, ttl, secret } } => {
            init_logs("warn");
            let ttl = herald::domain::duration::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
            let sdk = herald::aws::sdk_config().await;
            println!("{}", herald_cli::inbox::token(&sdk, &secret, &recipient, ttl, chrono::Utc::now()).await?);
        }
        Command::Inbox { command: InboxCommand::List { recipient, status, limit, url, secret } } => {
            init_logs("warn");
            let sdk = herald::aws::sdk_config().await;
            let ttl = chrono::TimeDelta::minutes(5);
            let token = herald_cli::inbox::token(&sdk, &secret, &recipient, ttl, chrono::Utc::now()).await?;
            print!("{}", herald_cli::inbox::list(&url, &token, &status, limit).await?);
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

/// Checks a command against the ingest contract and puts it on the ingest queue.
async fn publish(queue: &str, body: serde_json::Value) -> anyhow::Result<String> {
    let body = body.to_string();
    if let Err(rejection) = herald::contract::IngestMessage::parse(&body) {
        anyhow::bail!("ingest would refuse it: {rejection}");
    }
    let sdk = herald::aws::sdk_config().await;
    let out = aws_sdk_sqs::Client::new(&sdk).send_message().queue_url(queue).message_body(body).send().await?;
    Ok(out.message_id.unwrap_or_default())
}

async fn broadcast(command: BroadcastCommand) -> anyhow::Result<()> {
    use serde_json::json;
    let control = |kind: &str, campaign: &str| json!({"type": kind, "campaign": campaign, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
    match command {
        BroadcastCommand::Send {
            campaign,
            segment,
            template,
            channels,
            rate,
            send_at,
            local_time,
            default_timezone,
            expires_at,
            data,
            kind,
            queue,
        } => {
            let mut body = json!({"type": "broadcast", "campaign": campaign, "segment": segment,
                                  "rate_per_second": rate, "kind": kind});
            let optional = [
                ("template", template),
                ("send_at", send_at),
                ("local_time", local_time),
                ("default_timezone", default_timezone),
                ("expires_at", expires_at),
            ];
            for (name, value) in optional {
                if let Some(v) = value {
                    body[name] = json!(v);
                }
            }
            if !channels.is_empty() {
                body["channels"] = json!(channels);
            }
            if let Some(path) = data {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                body["data"] =
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            }
            let id = publish(&queue, body).await?;
            println!(
                "broadcast {campaign} queued (SQS message {id}); follow it with `herald broadcast status {campaign}`"
            );
        }
        BroadcastCommand::Pause { campaign, queue } => {
            publish(&queue, control("pause_broadcast", &campaign)).await?;
            println!("pause of {campaign} queued");
        }
        BroadcastCommand::Resume { campaign, queue } => {
            publish(&queue, control("resume_broadcast", &campaign)).await?;
            println!("resume of {campaign} queued");
        }
        BroadcastCommand::Cancel { campaign, queue } => {
            publish(&queue, control("cancel_broadcast", &campaign)).await?;
            println!("cancel of {campaign} queued");
        }
        BroadcastCommand::Status { campaign, table } => {
            let sdk = herald::aws::sdk_config().await;
            let ledger = herald::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            let report = herald_cli::broadcast::status(&ledger, &campaign).await?;
            println!("{}", report.with_context(|| format!("campaign {campaign} has no broadcast"))?);
        }
    }
    Ok(())
}

async fn import(command: ImportCommand) -> anyhow::Result<()> {
    use herald_cli::import::{self, publish};
    match command {
        ImportCommand::Recipients {
            file,
            queue,
            format,
            dry_run,
            rate,
            resume,
            restart,
            report,
            state,
            consent_source,
            quiet_hours,
            opt_out_none_grants,
        } => {
            let format = format.or_else(|| import::Format::guess(&file)).with_context(|| {
                format!("{}: say --format csv, ndjson or pinpoint (the name does not tell)", file.display())
            })?;
            let quiet_hours = quiet_hours
                .map(|q| {
                    q.split_once('-')
                        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
                        .context("--quiet-hours is START-END, such as 22:00-07:00")
                })
                .transpose()?;
            let options = import::ImportOptions { consent_source, quiet_hours, opt_out_none_grants };
            let mut run = publish::RunOptions::beside(&file);
            run.dry_run = dry_run;
            run.rate = rate;
            run.resume = match (resume, restart) {
                (true, _) => publish::Resume::Resume,
                (_, true) => publish::Resume::Restart,
                _ => publish::Resume::Ask,
            };
            run.report = report.unwrap_or(run.report);
            run.state = state.unwrap_or(run.state);
            run.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            // A dry run sends nothing: no credentials or region are looked for.
            let client = if dry_run {
                let config = aws_sdk_sqs::Config::builder()
                    .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                    .build();
                aws_sdk_sqs::Client::from_conf(config)
            } else {
                aws_sdk_sqs::Client::new(&herald::aws::sdk_config().await)
            };
            let queue = publish::SqsQueue { client, url: queue.unwrap_or_default() };
            let summary = publish::run(&file, format, &options, &run, &queue).await?;
            println!("{summary}");
        }
        ImportCommand::PinpointTemplates { files, out, locale } => {
            let conversion = import::templates::convert(&files, &locale)?;
            for path in import::templates::write(&conversion, &out)? {
                println!("wrote {}", path.display());
            }
            for t in &conversion.templates {
                for note in &t.notes {
                    println!("{}: not converted: {note}", t.doc.name);
                }
            }
            let attributes: std::collections::BTreeSet<&String> =
                conversion.templates.iter().flat_map(|t| &t.attributes).collect();
            if !attributes.is_empty() {
                println!("declare in profile.toml, under [attributes] (as \"string\" unless you know better):");
                for a in attributes {
                    println!("  {a} = \"string\"");
                }
            }
            for line in &conversion.settings {
                println!("{line}");
            }
            for why in &conversion.refused {
                eprintln!("not converted: {why}");
            }
            if !conversion.refused.is_empty() {
                anyhow::bail!("{} file(s) or template(s) not converted", conversion.refused.len());
            }
        }
    }
    Ok(())
}
