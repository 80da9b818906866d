#!/usr/bin/env node
// An app that deploys Herald with CDK: `npm run synth` (offline), `npx cdk deploy` (with credentials).
// `make infra-test` synthesizes it and checks it against ../template.yaml, which it resolves with
// the same values as below (SAM_PARAMETERS in test/parity.py: keep the two in step).
//
// HERALD_ARTIFACTS_DIR: where `make build` put the functions (default ../target/lambda).
// Context `tracing` (`cdk synth -c tracing=true`): active X-Ray tracing on every function, as
// template.yaml's Tracing=Active; default off, as Tracing=Disabled. `make infra-test` synthesizes both.

import * as path from 'path';
import { App, CfnOutput, Stack, Validations } from 'aws-cdk-lib';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Herald } from '../lib';

const app = new App({ analyticsReporting: false });

// An explicit account and region: synth needs no credentials and makes no lookups.
const account = '123456789012';
const region = 'us-east-1';
const stack = new Stack(app, 'HeraldExample', {
  env: { account, region },
  analyticsReporting: false,
  description: 'Herald notification pipeline (ingest, eligibility, dispatch push/email/SMS/inbox, receipts)',
});

const herald = new Herald(stack, 'Herald', {
  artifactsDir: process.env.HERALD_ARTIFACTS_DIR ?? path.join(__dirname, '..', '..', '..', 'target', 'lambda'),
  email: { senderAddress: 'notifications@example.com', senderIdentity: 'example.com' },
  push: {
    apnsPlatformApplicationArn: `arn:aws:sns:${region}:${account}:app/APNS/herald-example`,
    apnsSandboxPlatformApplicationArn: `arn:aws:sns:${region}:${account}:app/APNS_SANDBOX/herald-example`,
    fcmPlatformApplicationArn: `arn:aws:sns:${region}:${account}:app/GCM/herald-example`,
  },
  alarmTopic: sns.Topic.fromTopicArn(stack, 'AlarmTopic', `arn:aws:sns:${region}:${account}:herald-alarms`),
  tracing: String(app.node.tryGetContext('tracing')) === 'true',
});

// A producer of the team's own: one line grants it sqs:SendMessage on the ingest queue.
// herald.grantPublish(myServiceRole);

// The outputs of template.yaml, under the same names.
const output = (name: string, value: string, description: string) =>
  new CfnOutput(stack, name, { value, description }).overrideLogicalId(name);
output('IngestQueueUrl', herald.ingestQueue.queueUrl, 'Producers send notification requests and recipient commands here.');
output('IngestQueueArn', herald.ingestQueue.queueArn, 'ARN of the ingest queue (grant producers sqs:SendMessage on it).');
output('BroadcastQueueUrl', herald.broadcastQueue.queueUrl, 'Broadcast page jobs (internal: producers start a broadcast on the ingest queue); its depth is how many pages wait to be read.');
output('DigestQueueUrl', herald.digestQueue.queueUrl, "Digest windows' close jobs (internal: producers send digest items as notifications on the ingest queue); one message closes one window.");
output('JourneyQueueUrl', herald.journeyQueue.queueUrl, "Journey steps' wake-ups (internal: people enter a journey on the ingest queue); one message moves one person one step on.");
output('EventBusName', herald.eventBus.eventBusName, 'The EventBridge bus every ledger transition and consent change is published on (source herald.<stack name>, docs/events.md); add rules on it to consume them.');
output('EventBusArn', herald.eventBus.eventBusArn, 'ARN of the event bus.');
output('InboxQueueUrl', herald.inboxQueue.queueUrl, 'In-app inbox sends (internal; eligibility routes notifications here).');
output('InboxTableName', herald.inboxTable.tableName, 'In-app inbox messages, by person.');
output('InboxUrl', herald.inboxUrl, "The in-app inbox API the team's app calls with a user token (docs/inbox.md): <url>v1/messages, <url>v1/messages/count, <url>v1/messages/<id>/read.");
output('InboxTokenKeyArn', herald.inboxTokenKey.secretArn, "Secrets Manager secret the team's backend signs inbox user tokens with (HS256 JWT, sub = recipient id).");
output('SesEventsTopicArn', herald.sesEventsTopic.topicArn, 'SNS topic receiving SES sending events.');
output('PushEventsTopicArn', herald.pushEventsTopic.topicArn, 'SNS topic to set as the event topic of the SNS platform applications.');
output('SesConfigurationSetName', herald.sesConfigurationSetName, 'SES configuration set used for every email.');
output('LedgerTableName', herald.ledgerTable.tableName, 'DynamoDB message ledger table.');
output('JourneysTableName', herald.journeysTable.tableName, 'Where each person stands in each journey; `herald journey status` reads it.');
output('TemplatesTableName', herald.templatesTable.tableName, 'Where `herald templates push --table` uploads templates and campaigns.');
output('WebhookUrl', herald.webhookUrl, "Herald's HTTPS endpoint: <url>sns for SNS HTTPS subscriptions, <url>providers/<name> for custom providers, <url>unsubscribe for one-click unsubscribe links.");
output('WebhookProviderSecretsArn', herald.webhookProviderSecrets.secretArn, 'Secrets Manager secret of the custom webhook providers, {"<name>": {"secret": "<shared secret>", "channels": ["sms"]}}: aws secretsmanager put-secret-value --secret-id <arn> --secret-string \'{"acme": {"secret": "...", "channels": ["sms"]}}\'');

// cdk-nag's AwsSolutions rules: any finding that is not acknowledged (with its reason, in
// lib/herald.ts) fails the synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));

app.synth();
