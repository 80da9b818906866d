use herald::config::process_env;
use herald::lambda::{LambdaEvent, SqsEvent, init_tracing, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::lambda::Error> {
    init_tracing();
    let config = dispatch_inbox::Config::from_lookup(&process_env)?;
    let sdk = herald::aws::sdk_config().await;
    let (deps, inbox) = dispatch_inbox::aws::deps(&sdk, &config);
    run(service_fn(|event: LambdaEvent<SqsEvent>| dispatch_inbox::handler(&deps, &inbox, event))).await
}
