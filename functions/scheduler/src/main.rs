use herald::config::process_env;
use herald::lambda::{LambdaEvent, init_tracing, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::lambda::Error> {
    init_tracing();
    let config = scheduler::Config::from_lookup(&process_env)?;
    let sdk = herald::aws::sdk_config().await;
    let deps = scheduler::aws::deps(&sdk, &config);
    run(service_fn(|event: LambdaEvent<serde_json::Value>| scheduler::handler(&deps, event))).await
}
