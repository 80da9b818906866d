//! Creates, on a local endpoint, the resources `template.yaml` declares, and
//! resolves each function's environment the way CloudFormation would. The
//! template is the only list of resources: nothing here names a queue or table.

use anyhow::{Context as _, anyhow, bail};
use aws_config::SdkConfig;
use serde_norway::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const ACCOUNT_ID: &str = "123456789012";

#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// A function as the template declares it, with its environment resolved.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The binary: the last folder of `CodeUri` (`target/lambda/<name>/`).
    pub name: String,
    pub env: BTreeMap<String, String>,
    pub trigger: Trigger,
    pub timeout_secs: u64,
}

/// What invokes a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An SQS event source: the logical id of the queue, and the batch size.
    Queue { queue: String, batch_size: i32 },
    /// An EventBridge schedule, every so many seconds.
    Schedule { every_secs: u64 },
    /// A Lambda Function URL (HTTP).
    Url,
    /// DynamoDB stream event sources (one per table).
    Streams(Vec<StreamSource>),
}

/// A DynamoDB stream a function reads, as its event source mapping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSource {
    /// The table's logical id.
    pub table: String,
    pub batch_size: i32,
    /// `FilterCriteria.Filters[].Pattern`: a record goes to the function when one matches
    /// (or when there is none).
    pub patterns: Vec<String>,
}

impl FunctionSpec {
    pub fn queue(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Queue { queue, .. } => Some(queue),
            _ => None,
        }
    }
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` as seconds.
pub fn parse_rate(expr: &str) -> Option<u64> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let unit_secs = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(n * unit_secs)
}

#[derive(Debug, Clone, Default)]
/// A stack created on a local endpoint from the template.
pub struct Stack {
    pub prefix: String,
    pub region: String,
    pub params: HashMap<String, String>,
    pub queues: BTreeMap<String, Queue>,
    pub tables: BTreeMap<String, String>,
    /// Stream ARNs of the tables with a `StreamSpecification`, by table logical id.
    pub streams: BTreeMap<String, String>,
    /// EventBridge buses (name, ARN), by logical id.
    pub buses: BTreeMap<String, (String, String)>,
    pub topics: BTreeMap<String, String>,
    pub config_sets: BTreeMap<String, String>,
    /// Secrets Manager secrets' ARNs (what `!Ref` gives), by logical id.
    pub secrets: BTreeMap<String, String>,
    /// Local URLs of the functions with a `FunctionUrlConfig`, by function logical id,
    /// chosen before the functions are resolved so `!GetAtt <Function>Url.FunctionUrl` works.
    pub function_urls: BTreeMap<String, String>,
    pub functions: Vec<FunctionSpec>,
}

fn tag_name(tag: &serde_norway::value::Tag) -> String {
    tag.to_string().trim_start_matches('!').to_owned()
}

/// The intrinsic function in a value, as (name, argument), in short or long form.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((tag_name(&t.tag), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), arg))
            } else {
                k.strip_prefix("Fn::").map(|name| (name.to_owned(), arg))
            }
        }
        _ => None,
    }
}

impl Stack {
    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT_ID.into()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::StackName" => Some(self.prefix.trim_end_matches('-').to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        if let Some(v) = self.pseudo(name).or_else(|| self.params.get(name).cloned()) {
            return Ok(v);
        }
        if let Some(q) = self.queues.get(name) {
            return Ok(q.url.clone());
        }
        if let Some(t) = [&self.tables, &self.topics, &self.config_sets, &self.secrets].iter().find_map(|m| m.get(name))
        {
            return Ok(t.clone());
        }
        if let Some((bus, _)) = self.buses.get(name) {
            return Ok(bus.clone());
        }
        bail!("!Ref {name}: not a parameter or a resource created locally")
    }

    fn attribute(&self, name: &str, attr: &str) -> anyhow::Result<String> {
        let found = match attr {
            "Arn" => self
                .queues
                .get(name)
                .map(|q| q.arn.clone())
                .or_else(|| {
                    self.tables.get(name).map(|t| format!("arn:aws:dynamodb:{}:{ACCOUNT_ID}:table/{t}", self.region))
                })
                .or_else(|| self.topics.get(name).cloned())
                .or_else(|| self.buses.get(name).map(|(_, arn)| arn.clone())),
            "StreamArn" => self.streams.get(name).cloned(),
            "QueueUrl" => self.queues.get(name).map(|q| q.url.clone()),
            "QueueName" => self.queues.get(name).and_then(|q| q.url.rsplit('/').next().map(str::to_owned)),
            "TopicName" => self.topics.get(name).and_then(|t| t.rsplit(':').next().map(str::to_owned)),
            "TopicArn" => self.topics.get(name).cloned(),
            // SAM names a function's URL resource `<Function>Url`.
            "FunctionUrl" => name.strip_suffix("Url").and_then(|f| self.function_urls.get(f)).cloned(),
            _ => None,
        };
        found.ok_or_else(|| anyhow!("!GetAtt {name}.{attr}: not available locally"))
    }

    /// Resolves a property value to a string, as CloudFormation would.
    pub fn resolve(&self, v: &Value) -> anyhow::Result<String> {
        if let Some((name, arg)) = intrinsic(v) {
            return match name.as_str() {
                "Ref" => self.reference(arg.as_str().context("!Ref takes a name")?),
                "GetAtt" => {
                    let (res, attr) = match arg {
                        Value::String(s) => s.split_once('.').context("!GetAtt Resource.Attribute")?,
                        Value::Sequence(parts) if parts.len() == 2 => (
                            parts[0].as_str().context("!GetAtt resource")?,
                            parts[1].as_str().context("!GetAtt attribute")?,
                        ),
                        _ => bail!("!GetAtt takes Resource.Attribute"),
                    };
                    self.attribute(res, attr)
                }
                "Sub" => {
                    let template = arg.as_str().context("only the one-argument !Sub is supported locally")?;
                    self.substitute(template)
                }
                "Join" => {
                    let parts = arg.as_sequence().context("!Join takes [delimiter, list]")?;
                    let delimiter = parts.first().and_then(Value::as_str).unwrap_or_default();
                    let items = parts.get(1).and_then(Value::as_sequence).context("!Join list")?;
                    Ok(items.iter().map(|i| self.resolve(i)).collect::<anyhow::Result<Vec<_>>>()?.join(delimiter))
                }
                other => bail!("intrinsic {other} is not supported by the local runner"),
            };
        }
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => bail!("cannot resolve {other:?} to a string"),
        }
    }

    fn substitute(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').context("unclosed ${ in !Sub")? + start;
            let name = &rest[start + 2..end];
            let value = match name.split_once('.') {
                Some((res, attr)) => self.attribute(res, attr)?,
                None => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The queue a function reads, by logical id.
    pub fn queue(&self, logical_id: &str) -> anyhow::Result<&Queue> {
        self.queues.get(logical_id).with_context(|| format!("no queue {logical_id} in the template"))
    }

    /// The ARN of a secret the template declares, by logical id.
    pub fn secret(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.secrets
            .get(logical_id)
            .map(String::as_str)
            .with_context(|| format!("no secret {logical_id} in the template"))
    }

    /// A secret's current value, read as the functions read it.
    pub async fn secret_value(&self, sdk: &SdkConfig, logical_id: &str) -> anyhow::Result<String> {
        let out = aws_sdk_secretsmanager::Client::new(sdk)
            .get_secret_value()
            .secret_id(self.secret(logical_id)?)
            .send()
            .await?;
        out.secret_string.with_context(|| format!("secret {logical_id} has no SecretString"))
    }
}

/// Reads `template.yaml`.
pub fn read_template(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn resources(template: &Value) -> anyhow::Result<Vec<(String, String, Value)>> {
    let resources = template.get("Resources").and_then(Value::as_mapping).context("template has no Resources")?;
    Ok(resources
        .iter()
        .filter_map(|(k, v)| {
            let kind = v.get("Type")?.as_str()?.to_owned();
            Some((k.as_str()?.to_owned(), kind, v.get("Properties").cloned().unwrap_or(Value::Null)))
        })
        .collect())
}

/// Local values for parameters that name things created outside the stack.
pub struct LocalParams {
    pub overrides: HashMap<String, String>,
    /// Port for the first function URL (0: a free one; the others always take free ones).
    pub web_port: u16,
}

/// Creates every queue, table, topic, subscription, SES configuration set and secret the
/// template declares, named `<prefix><LogicalId>`, and resolves every function.
pub async fn create(sdk: &SdkConfig, template: &Value, prefix: &str, local: LocalParams) -> anyhow::Result<Stack> {
    let region = sdk.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".into());
    let mut stack = Stack { prefix: prefix.to_owned(), region, ..Stack::default() };

    if let Some(params) = template.get("Parameters").and_then(Value::as_mapping) {
        for (name, spec) in params {
            let Some(name) = name.as_str() else { continue };
            let default = spec.get("Default").map(|d| stack.resolve(d)).transpose()?.unwrap_or_default();
            stack.params.insert(name.to_owned(), default);
        }
    }
    stack.params.extend(local.overrides.clone());

    let all = resources(template)?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let ses = aws_sdk_sesv2::Client::new(sdk);
    let secretsmanager = aws_sdk_secretsmanager::Client::new(sdk);

    // Queues: dead-letter queues first, so redrive policies can name them.
    let mut queues: Vec<_> = all.iter().filter(|(_, t, _)| t == "AWS::SQS::Queue").collect();
    queues.sort_by_key(|(_, _, p)| p.get("RedrivePolicy").is_some());
    for (id, _, props) in queues {
        let name = format!("{prefix}{id}");
        let mut attrs = HashMap::new();
        for key in [
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ] {
            if let Some(v) = props.get(key) {
                attrs.insert(aws_sdk_sqs::types::QueueAttributeName::from(key), stack.resolve(v)?);
            }
        }
        if let Some(redrive) = props.get("RedrivePolicy") {
            let target = stack.resolve(redrive.get("deadLetterTargetArn").context("deadLetterTargetArn")?)?;
            let max = stack.resolve(redrive.get("maxReceiveCount").context("maxReceiveCount")?)?;
            let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": max.parse::<u32>()? });
            attrs.insert(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attrs))
            .send()
            .await
            .with_context(|| format!("creating queue {name}"))?
            .queue_url
            .context("no queue URL")?;
        let arn = format!("arn:aws:sqs:{}:{ACCOUNT_ID}:{name}", stack.region);
        stack.queues.insert(id.clone(), Queue { url, arn });
    }

    for (id, _, props) in all.iter().filter(|(_, t, _)| t == "AWS::DynamoDB::Table") {
        let name = format!("{prefix}{id}");
        let stream = create_table(&dynamodb, &name, props).await.with_context(|| format!("creating table {name}"))?;
        if let Some(arn) = stream {
            stack.streams.insert(id.clone(), arn);
        }
        stack.tables.insert(id.clone(), name);
    }

    for (id, _, _) in all.iter().filter(|(_, t, _)| t == "AWS::SNS::Topic") {
        let name = format!("{prefix}{id}");
        let arn = sns.create_topic().name(&name).send().await?.topic_arn.context("no topic ARN")?;
        stack.topics.insert(id.clone(), arn);
    }

    for (id, _, props) in all.iter().filter(|(_, t, _)| t == "AWS::SNS::Subscription") {
        let topic = stack.resolve(props.get("TopicArn").context("TopicArn")?)?;
        let protocol = stack.resolve(props.get("Protocol").context("Protocol")?)?;
        let endpoint = stack.resolve(props.get("Endpoint").context("Endpoint")?)?;
        let mut req = sns.subscribe().topic_arn(topic).protocol(protocol).endpoint(endpoint);
        if let Some(raw) = props.get("RawMessageDelivery") {
            req = req.attributes("RawMessageDelivery", stack.resolve(raw)?);
        }
        req.send().await.with_context(|| format!("creating subscription {id}"))?;
    }

    let eventbridge = aws_sdk_eventbridge::Client::new(sdk);
    for (id, _, props) in all.iter().filter(|(_, t, _)| t == "AWS::Events::EventBus") {
        // Its name carries the stack's (`${AWS::StackName}-events`): no prefix needed.
        let name = stack.resolve(props.get("Name").context("EventBus Name")?)?;
        let arn = eventbridge.create_event_bus().name(&name).send().await?.event_bus_arn.context("no bus ARN")?;
        stack.buses.insert(id.clone(), (name, arn));
    }

    for (id, _, _) in all.iter().filter(|(_, t, _)| t == "AWS::SES::ConfigurationSet") {
        let name = format!("{prefix}{id}");
        ses.create_configuration_set().configuration_set_name(&name).send().await?;
        stack.config_sets.insert(id.clone(), name);
    }

    // Secrets: a given value, or one drawn as CloudFormation draws it (GetRandomPassword).
    for (id, _, props) in all.iter().filter(|(_, t, _)| t == "AWS::SecretsManager::Secret") {
        let name = format!("{prefix}{id}");
        let value = match (props.get("SecretString"), props.get("GenerateSecretString")) {
            (Some(value), None) => stack.resolve(value)?,
            (None, Some(spec)) => {
                random_password(&secretsmanager, &stack, spec).await.with_context(|| format!("secret {id}"))?
            }
            _ => bail!("{id}: one of SecretString and GenerateSecretString"),
        };
        let description = props.get("Description").map(|d| stack.resolve(d)).transpose()?;
        let arn = secretsmanager
            .create_secret()
            .name(&name)
            .set_description(description)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("creating secret {name}"))?
            .arn
            .context("no secret ARN")?;
        stack.secrets.insert(id.clone(), arn);
    }

    // Function URLs: a loopback port each, reserved now and served by the local web front.
    let mut web_port = local.web_port;
    for (id, _, _) in
        all.iter().filter(|(_, t, p)| t == "AWS::Serverless::Function" && p.get("FunctionUrlConfig").is_some())
    {
        let port = match std::mem::take(&mut web_port) {
            0 => std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port(),
            chosen => chosen,
        };
        stack.function_urls.insert(id.clone(), format!("http://127.0.0.1:{port}/"));
    }
    stack.functions = functions(&stack, template, &all)?;
    Ok(stack)
}

/// A `GenerateSecretString` value. Only the properties Herald's template uses: another
/// one fails here rather than be ignored.
async fn random_password(
    client: &aws_sdk_secretsmanager::Client,
    stack: &Stack,
    spec: &Value,
) -> anyhow::Result<String> {
    let mut req = client.get_random_password();
    for (key, value) in spec.as_mapping().context("GenerateSecretString")? {
        let value = stack.resolve(value)?;
        req = match key.as_str().unwrap_or_default() {
            "PasswordLength" => req.password_length(value.parse()?),
            "ExcludePunctuation" => req.exclude_punctuation(value == "true"),
            "ExcludeCharacters" => req.exclude_characters(value),
            other => bail!("GenerateSecretString.{other} is not supported by the local runner"),
        };
    }
    req.send().await?.random_password.context("no random password")
}

/// Creates a table; returns its stream's ARN when it has one.
async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, props: &Value) -> anyhow::Result<Option<String>> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
        StreamViewType, TimeToLiveSpecification,
    };
    let mut req = client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for def in props.get("AttributeDefinitions").and_then(Value::as_sequence).context("AttributeDefinitions")? {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(def.get("AttributeName").and_then(Value::as_str).context("AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    def.get("AttributeType").and_then(Value::as_str).context("AttributeType")?,
                ))
                .build()?,
        );
    }
    for key in props.get("KeySchema").and_then(Value::as_sequence).context("KeySchema")? {
        req = req.key_schema(
            KeySchemaElement::builder()
                .attribute_name(key.get("AttributeName").and_then(Value::as_str).context("AttributeName")?)
                .key_type(KeyType::from(key.get("KeyType").and_then(Value::as_str).context("KeyType")?))
                .build()?,
        );
    }
    if let Some(stream) = props.get("StreamSpecification") {
        let view = stream.get("StreamViewType").and_then(Value::as_str).context("StreamViewType")?;
        req = req.stream_specification(
            StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::from(view)).build()?,
        );
    }
    let created = req.send().await?;
    let stream = created.table_description.and_then(|t| t.latest_stream_arn);
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        let attribute = ttl.get("AttributeName").and_then(Value::as_str).context("TTL AttributeName")?;
        let enabled = ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(true);
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(attribute).enabled(enabled).build()?,
            )
            .send()
            .await?;
    }
    Ok(stream)
}

/// Whether a value names resource `id` (`!Ref id`, or `!GetAtt id.Arn` as a function name may).
fn names(value: Option<&Value>, id: &str) -> bool {
    match value.and_then(intrinsic) {
        Some((name, Value::String(arg))) if name == "Ref" => arg == id,
        Some((name, Value::String(arg))) if name == "GetAtt" => arg.split_once('.') == Some((id, "Arn")),
        Some((name, Value::Sequence(parts))) if name == "GetAtt" => {
            parts.iter().map(Value::as_str).collect::<Vec<_>>() == [Some(id), Some("Arn")]
        }
        _ => false,
    }
}

fn functions(stack: &Stack, template: &Value, all: &[(String, String, Value)]) -> anyhow::Result<Vec<FunctionSpec>> {
    let globals = template.get("Globals").and_then(|g| g.get("Function"));
    let global = |key: &str| globals.and_then(|g| g.get(key));
    let mut out = Vec::new();
    for (id, _, props) in all.iter().filter(|(_, t, _)| t == "AWS::Serverless::Function") {
        let code = props.get("CodeUri").and_then(Value::as_str).with_context(|| format!("{id}: CodeUri"))?;
        let name = code.trim_end_matches('/').rsplit('/').next().unwrap_or(code).to_owned();
        let mut env = BTreeMap::new();
        for vars in [global("Environment"), props.get("Environment")].into_iter().flatten() {
            if let Some(map) = vars.get("Variables").and_then(Value::as_mapping) {
                for (k, v) in map {
                    let k = k.as_str().context("variable name")?;
                    env.insert(k.to_owned(), stack.resolve(v).with_context(|| format!("{id}: {k}"))?);
                }
            }
        }
        let events: Vec<&Value> =
            props.get("Events").and_then(Value::as_mapping).map(|m| m.values().collect()).unwrap_or_default();
        let of_type = |t: &str| events.iter().copied().find(|e| e.get("Type").and_then(Value::as_str) == Some(t));
        let number = |v: Option<&Value>| v.and_then(|v| stack.resolve(v).ok()).and_then(|v| v.parse::<i64>().ok());
        // An SQS event source: an AWS::Lambda::EventSourceMapping naming the function (what
        // template.yaml declares), or a SAM event of Type SQS.
        let mappings: Vec<&Value> = all
            .iter()
            .filter(|(_, t, p)| t == "AWS::Lambda::EventSourceMapping" && names(p.get("FunctionName"), id))
            .map(|(_, _, p)| p)
            .collect();
        let mut streams = Vec::new();
        for m in &mappings {
            let arn = stack.resolve(m.get("EventSourceArn").with_context(|| format!("{id}: EventSourceArn"))?)?;
            let Some(table) = stack.streams.iter().find(|(_, s)| **s == arn).map(|(t, _)| t.clone()) else { continue };
            let patterns = m
                .get("FilterCriteria")
                .and_then(|f| f.get("Filters"))
                .and_then(Value::as_sequence)
                .map(|filters| filters.iter().filter_map(|f| f.get("Pattern").map(|p| stack.resolve(p))).collect())
                .transpose()?
                .unwrap_or_default();
            streams.push(StreamSource {
                table,
                batch_size: number(m.get("BatchSize")).unwrap_or(100) as i32,
                patterns,
            });
        }
        let mapping = mappings
            .iter()
            .find(|m| m.get("EventSourceArn").and_then(|a| stack.resolve(a).ok()).is_some_and(|a| a.contains(":sqs:")))
            .map(|p| (p.get("EventSourceArn"), p.get("BatchSize")));
        let sqs_event =
            || of_type("SQS").and_then(|e| e.get("Properties")).map(|p| (p.get("Queue"), p.get("BatchSize")));
        let trigger = if !streams.is_empty() {
            Trigger::Streams(streams)
        } else if let Some((queue_ref, batch_size)) = mapping.or_else(sqs_event) {
            let queue_arn = stack.resolve(queue_ref.with_context(|| format!("{id}: event source queue"))?)?;
            let queue = stack
                .queues
                .iter()
                .find(|(_, q)| q.arn == queue_arn)
                .map(|(k, _)| k.clone())
                .with_context(|| format!("{id}: event queue {queue_arn} is not in the template"))?;
            let batch_size = number(batch_size).unwrap_or(10) as i32;
            Trigger::Queue { queue, batch_size }
        } else if let Some(event) = of_type("Schedule").or_else(|| of_type("ScheduleV2")) {
            let expr = event
                .get("Properties")
                .and_then(|p| p.get("Schedule").or_else(|| p.get("ScheduleExpression")))
                .and_then(Value::as_str)
                .context("Schedule expression")?;
            let every_secs = parse_rate(expr).with_context(|| format!("{id}: only rate(...) schedules run locally"))?;
            Trigger::Schedule { every_secs }
        } else if props.get("FunctionUrlConfig").is_some() {
            Trigger::Url
        } else {
            bail!("{id}: no SQS event, stream, schedule or function URL")
        };
        let timeout_secs = number(props.get("Timeout").or(global("Timeout"))).unwrap_or(3) as u64;
        out.push(FunctionSpec { logical_id: id.clone(), name, env, trigger, timeout_secs });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_with_queue() -> Stack {
        let queue = Queue { url: "http://q/Jobs".into(), arn: format!("arn:aws:sqs:us-east-1:{ACCOUNT_ID}:Jobs") };
        Stack { region: "us-east-1".into(), queues: BTreeMap::from([("Jobs".to_owned(), queue)]), ..Stack::default() }
    }

    fn triggers(template: &str) -> anyhow::Result<Vec<(String, Trigger)>> {
        let template: Value = serde_norway::from_str(template)?;
        let specs = functions(&stack_with_queue(), &template, &resources(&template)?)?;
        Ok(specs.into_iter().map(|f| (f.logical_id, f.trigger)).collect())
    }

    #[test]
    fn an_event_source_mapping_or_a_sam_sqs_event_makes_a_queue_trigger() -> anyhow::Result<()> {
        let queue = |batch_size| Trigger::Queue { queue: "Jobs".into(), batch_size };
        let cases = [
            (
                "mapping by Ref",
                "Resources:
  Worker: {Type: AWS::Serverless::Function, Properties: {CodeUri: target/lambda/worker/}}
  WorkerJobs:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {FunctionName: !Ref Worker, EventSourceArn: !GetAtt Jobs.Arn, BatchSize: 3}",
                queue(3),
            ),
            (
                "mapping by GetAtt Arn, default batch size",
                "Resources:
  Worker: {Type: AWS::Serverless::Function, Properties: {CodeUri: target/lambda/worker/}}
  WorkerJobs:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {FunctionName: !GetAtt [Worker, Arn], EventSourceArn: !GetAtt Jobs.Arn}",
                queue(10),
            ),
            (
                "SAM event",
                "Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/worker/
      Events: {Jobs: {Type: SQS, Properties: {Queue: !GetAtt Jobs.Arn, BatchSize: 5}}}",
                queue(5),
            ),
            (
                "a mapping of another function is not this one's",
                "Resources:
  Worker: {Type: AWS::Serverless::Function, Properties: {CodeUri: target/lambda/worker/, FunctionUrlConfig: {AuthType: NONE}}}
  OtherJobs:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {FunctionName: !Ref Other, EventSourceArn: !GetAtt Jobs.Arn}",
                Trigger::Url,
            ),
        ];
        for (name, template, expected) in cases {
            assert_eq!(triggers(template)?, vec![("Worker".to_owned(), expected)], "{name}");
        }
        Ok(())
    }

    #[test]
    fn a_mapping_on_a_queue_the_template_lacks_is_an_error() {
        let template = "Resources:
  Worker: {Type: AWS::Serverless::Function, Properties: {CodeUri: target/lambda/worker/}}
  WorkerJobs:
    Type: AWS::Lambda::EventSourceMapping
    Properties: {FunctionName: !Ref Worker, EventSourceArn: arn:aws:sqs:us-east-1:123456789012:Elsewhere}";
        let error = triggers(template).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("is not in the template"), "{error}");
    }
}
