import { type CfnResource, RemovalPolicy, type Stack } from 'aws-cdk-lib';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { retentionFor } from './constructs/pulse-function.ts';

/**
 * The construct id of CDK's stack-singleton function behind bucket notifications (aws-s3's
 * NotificationsResourceHandler: a Python function calling PutBucketNotificationConfiguration).
 */
export const NOTIFICATIONS_HANDLER_ID = 'BucketNotificationsHandler050a0587b7544547bf325f094a3db834';

/**
 * Gives CDK's bucket-notifications handler a log group with a retention. CDK declares that function as a
 * raw `AWS::Lambda::Function` without a log group, so Lambda would create `/aws/lambda/<its name>` on
 * its first invocation, kept forever. Its `LoggingConfig.LogGroup` is set to a log group of the stack's
 * instead (Lambda sends a function's logs to the group LoggingConfig names; its role's
 * AWSLambdaBasicExecutionRole may write to any group). Call after the bucket's notifications are added.
 */
export function retainNotificationsHandlerLogs(stack: Stack, retentionDays: number): LogGroup {
  const handler = stack.node.tryFindChild(NOTIFICATIONS_HANDLER_ID);
  const fn = handler?.node.defaultChild as CfnResource | undefined;
  if (fn?.cfnResourceType !== 'AWS::Lambda::Function') {
    throw new Error(
      `CDK's bucket-notifications handler (${NOTIFICATIONS_HANDLER_ID}) was not found: add the bucket's notifications first`,
    );
  }
  const logs = new LogGroup(stack, 'BucketNotificationsHandlerLogs', {
    retention: retentionFor(retentionDays),
    removalPolicy: RemovalPolicy.DESTROY,
  });
  fn.addPropertyOverride('LoggingConfig', { LogGroup: logs.logGroupName });
  return logs;
}
