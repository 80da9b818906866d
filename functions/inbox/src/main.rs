//! The inbox API function: a Function URL handler.
// The handler future of a generic store, queue and key is deep for the layout computation.
#![recursion_limit = "256"]

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use herald::config::process_env;
use herald::lambda::{LambdaEvent, init_tracing, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::lambda::Error> {
    init_tracing();
    let config = inbox::Config::from_lookup(&process_env)?;
    let sdk = herald::aws::sdk_config().await;
    let deps = inbox::aws::deps(&sdk, &config);
    run(service_fn(|event: LambdaEvent<LambdaFunctionUrlRequest>| inbox::handler(&deps, event))).await
}
