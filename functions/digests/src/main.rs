use herald::config::process_env;
use herald::lambda::{LambdaEvent, SqsEvent, init_tracing, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::lambda::Error> {
    init_tracing();
    let config = digests::Config::from_lookup(&process_env)?;
    let sdk = herald::aws::sdk_config().await;
    let deps = digests::aws::deps(&sdk, &config);
    run(service_fn(|event: LambdaEvent<SqsEvent>| digests::handler(&deps, event))).await
}
