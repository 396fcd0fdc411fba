import type { RouteTable, VpcEndpoint } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { networkCheck, subnetReach } from '../../../../local/commands/doctor-network.ts';

const REGION = 'eu-west-1';
/** EC2 answers endpoint states in lower case (`available`), whatever the SDK's enum spells. */
const state = (s: string) => s as VpcEndpoint['State'];
const table = (
  id: string,
  subnets: string[],
  routes: RouteTable['Routes'] = [],
  main = false,
): RouteTable => ({
  RouteTableId: id,
  Associations: [...subnets.map((SubnetId) => ({ SubnetId })), ...(main ? [{ Main: true }] : [])],
  Routes: routes,
});
const iface = (service: string, over: Partial<VpcEndpoint> = {}): VpcEndpoint => ({
  VpcEndpointId: `vpce-${service}`,
  VpcEndpointType: 'Interface',
  ServiceName: `com.amazonaws.${REGION}.${service}`,
  State: state('available'),
  PrivateDnsEnabled: true,
  ...over,
});
const gateway = (service: string, routeTableIds: string[]): VpcEndpoint => ({
  VpcEndpointId: `vpce-${service}`,
  VpcEndpointType: 'Gateway',
  ServiceName: `com.amazonaws.${REGION}.${service}`,
  State: state('available'),
  RouteTableIds: routeTableIds,
});

describe('subnetReach', () => {
  it('reaches every service through a NAT gateway on the default route', () => {
    // Prepare
    const tables = [
      table('rtb-a', ['subnet-a'], [{ DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: 'nat-1' }]),
    ];

    // Act
    const [reach] = subnetReach(['subnet-a'], tables, [], REGION);

    // Assess
    expect(reach).toMatchObject({
      subnetId: 'subnet-a',
      routeTableId: 'rtb-a',
      natGatewayId: 'nat-1',
      unreached: [],
    });
  });

  it('reaches every service through endpoints: interface ones with private DNS, gateway ones on its route table', () => {
    // Prepare
    const tables = [table('rtb-a', ['subnet-a'])];
    const endpoints = [
      iface('secretsmanager'),
      iface('sqs'),
      gateway('s3', ['rtb-a']),
      gateway('dynamodb', ['rtb-a']),
    ];

    // Act
    const [reach] = subnetReach(['subnet-a'], tables, endpoints, REGION);

    // Assess
    expect(reach?.unreached).toEqual([]);
    expect(reach?.endpoints).toEqual({
      secretsmanager: 'vpce-secretsmanager',
      sqs: 'vpce-sqs',
      s3: 'vpce-s3',
      dynamodb: 'vpce-dynamodb',
    });
  });

  it('does not count a gateway endpoint on another route table, an interface endpoint without private DNS, or one not available', () => {
    // Prepare
    const tables = [table('rtb-a', ['subnet-a']), table('rtb-b', ['subnet-b'])];
    const endpoints = [
      iface('secretsmanager', { PrivateDnsEnabled: false }),
      iface('sqs', { State: state('pending') }),
      gateway('s3', ['rtb-b']),
      gateway('dynamodb', ['rtb-a']),
    ];

    // Act
    const [reach] = subnetReach(['subnet-a'], tables, endpoints, REGION);

    // Assess
    expect(reach?.unreached).toEqual(['secretsmanager', 'sqs', 's3']);
  });

  it("uses the VPC's main route table for a subnet with no association of its own", () => {
    // Prepare
    const tables = [
      table('rtb-main', [], [{ DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: 'nat-main' }], true),
      table('rtb-b', ['subnet-b']),
    ];

    // Act
    const [reach] = subnetReach(['subnet-a'], tables, [], REGION);

    // Assess
    expect(reach).toMatchObject({ routeTableId: 'rtb-main', natGatewayId: 'nat-main' });
  });

  it('ignores a blackhole NAT route', () => {
    // Prepare
    const tables = [
      table(
        'rtb-a',
        ['subnet-a'],
        [{ DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: 'nat-gone', State: 'blackhole' }],
      ),
    ];

    // Act
    const [reach] = subnetReach(['subnet-a'], tables, [], REGION);

    // Assess
    expect(reach?.natGatewayId).toBeUndefined();
    expect(reach?.unreached).toHaveLength(4);
  });
});

describe('networkCheck', () => {
  it('cannot tell where a default route to a transit gateway leads, and says so instead of guessing', () => {
    // Prepare
    const reach = subnetReach(
      ['subnet-a'],
      [table('rtb-a', ['subnet-a'], [{ DestinationCidrBlock: '0.0.0.0/0', TransitGatewayId: 'tgw-1' }])],
      [],
      REGION,
    );

    // Act
    const check = networkCheck('vpc-1', reach);

    // Assess
    expect(check.status).toBe('cannot-check');
    expect(check.summary).toMatch(/tgw-1/);
  });

  it('is a problem for the subnets that reach a service neither way, naming each', () => {
    // Prepare
    const tables = [
      table('rtb-a', ['subnet-a'], [{ DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: 'nat-1' }]),
      table('rtb-b', ['subnet-b']),
    ];
    const reach = subnetReach(
      ['subnet-a', 'subnet-b'],
      tables,
      [iface('secretsmanager'), iface('sqs')],
      REGION,
    );

    // Act
    const check = networkCheck('vpc-1', reach);

    // Assess
    expect(check).toMatchObject({ status: 'problem', summary: 'subnet-b reaches no s3, dynamodb' });
    expect(check.details).toEqual([
      'subnet-a (route table rtb-a): NAT nat-1, secretsmanager endpoint vpce-secretsmanager, sqs endpoint vpce-sqs',
      'subnet-b (route table rtb-b): no NAT, secretsmanager endpoint vpce-secretsmanager, sqs endpoint vpce-sqs',
    ]);
  });
});
