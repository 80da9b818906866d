use herald::config::process_env;
use herald::domain::events::StreamEvent;
use herald::lambda::{LambdaEvent, init_tracing, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::lambda::Error> {
    init_tracing();
    let config = events::Config::from_lookup(&process_env)?;
    let sdk = herald::aws::sdk_config().await;
    let deps = events::aws::deps(&sdk, &config);
    run(service_fn(|event: LambdaEvent<StreamEvent>| events::handler(&deps, event))).await
}
