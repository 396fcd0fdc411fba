import {
  DescribeRouteTablesCommand,
  DescribeVpcEndpointsCommand,
  type EC2Client,
  type RouteTable,
  type VpcEndpoint,
} from '@aws-sdk/client-ec2';
import type { DoctorCheck } from './doctor.ts';

/** The AWS services the db-poller calls from its subnets: its secret, the signals queue, rejects, the watermark. */
export const POLLER_SERVICES = ['secretsmanager', 'sqs', 's3', 'dynamodb'] as const;
export type PollerService = (typeof POLLER_SERVICES)[number];

/** How one subnet reaches each service. */
export interface SubnetReach {
  readonly subnetId: string;
  /** Its route table (its own association, else the VPC's main one). */
  readonly routeTableId?: string;
  /** A NAT gateway its default route (0.0.0.0/0) goes to. */
  readonly natGatewayId?: string;
  /** A default route to something else (transit gateway, instance, peering): doctor cannot tell where it leads. */
  readonly otherDefaultRoute?: string;
  /** A default route to an internet gateway: no use to a Lambda function (its interfaces have no public IP). */
  readonly internetGatewayId?: string;
  /** Services reached through a VPC endpoint, with the endpoint's id. */
  readonly endpoints: Partial<Record<PollerService, string>>;
  /** Services neither the NAT nor an endpoint reaches. */
  readonly unreached: readonly PollerService[];
}

/** Every route table and VPC endpoint of a VPC (all pages). */
export async function describeVpcNetwork(
  ec2: EC2Client,
  vpcId: string,
): Promise<{ routeTables: RouteTable[]; endpoints: VpcEndpoint[] }> {
  const routeTables: RouteTable[] = [];
  const endpoints: VpcEndpoint[] = [];
  const filters = [{ Name: 'vpc-id', Values: [vpcId] }];
  let token: string | undefined;
  do {
    const out = await ec2.send(
      new DescribeRouteTablesCommand({ Filters: filters, ...(token ? { NextToken: token } : {}) }),
    );
    routeTables.push(...(out.RouteTables ?? []));
    token = out.NextToken;
  } while (token);
  do {
    const out = await ec2.send(
      new DescribeVpcEndpointsCommand({ Filters: filters, ...(token ? { NextToken: token } : {}) }),
    );
    endpoints.push(...(out.VpcEndpoints ?? []));
    token = out.NextToken;
  } while (token);
  return { routeTables, endpoints };
}

/**
 * How each subnet reaches the poller's services: through a NAT gateway on its default route, or a VPC endpoint
 * (an interface endpoint with private DNS on, so the SDK's usual host name resolves to it; a gateway endpoint,
 * S3 or DynamoDB, only from the route tables it is associated with). Only what the VPC says is used.
 */
export function subnetReach(
  subnetIds: readonly string[],
  routeTables: readonly RouteTable[],
  endpoints: readonly VpcEndpoint[],
  region: string,
): SubnetReach[] {
  const main = routeTables.find((t) => t.Associations?.some((a) => a.Main));
  return subnetIds.map((subnetId) => {
    const table = routeTables.find((t) => t.Associations?.some((a) => a.SubnetId === subnetId)) ?? main;
    const live = (table?.Routes ?? []).filter(
      (r) => r.DestinationCidrBlock === '0.0.0.0/0' && r.State !== 'blackhole',
    );
    const nat = live.find((r) => r.NatGatewayId)?.NatGatewayId;
    const igw = live.find((r) => r.GatewayId?.startsWith('igw-'))?.GatewayId;
    const other = live.find(
      (r) => r.TransitGatewayId || r.InstanceId || r.NetworkInterfaceId || r.VpcPeeringConnectionId,
    );
    const otherId =
      other?.TransitGatewayId ??
      other?.InstanceId ??
      other?.NetworkInterfaceId ??
      other?.VpcPeeringConnectionId;
    const reached: Partial<Record<PollerService, string>> = {};
    for (const service of POLLER_SERVICES) {
      const e = endpoints.find((x) => serves(x, service, region, table?.RouteTableId));
      if (e?.VpcEndpointId) reached[service] = e.VpcEndpointId;
    }
    return {
      subnetId,
      ...(table?.RouteTableId ? { routeTableId: table.RouteTableId } : {}),
      ...(nat ? { natGatewayId: nat } : {}),
      ...(otherId ? { otherDefaultRoute: otherId } : {}),
      ...(igw ? { internetGatewayId: igw } : {}),
      endpoints: reached,
      unreached: nat ? [] : POLLER_SERVICES.filter((s) => !reached[s]),
    };
  });
}

function serves(e: VpcEndpoint, service: PollerService, region: string, routeTableId?: string): boolean {
  if (!e.ServiceName?.endsWith(`.${region}.${service}`)) return false;
  if ((e.State ?? '').toLowerCase() !== 'available') return false;
  if (e.VpcEndpointType === 'Gateway')
    return routeTableId !== undefined && (e.RouteTableIds ?? []).includes(routeTableId);
  return e.PrivateDnsEnabled === true;
}

/** The poller's network check from each subnet's reach. */
export function networkCheck(vpcId: string, reach: readonly SubnetReach[]): DoctorCheck {
  const id = 'database-network';
  const title = "Database source: the db-poller's network";
  const details = reach.map(describeReach);
  const blocked = reach.filter((r) => r.unreached.length > 0);
  if (blocked.length === 0) {
    return {
      id,
      title,
      status: 'ok',
      summary: `in ${vpcId}: every subnet reaches Secrets Manager, SQS, S3 and DynamoDB`,
      details,
    };
  }
  const unsure = blocked.filter((r) => r.otherDefaultRoute);
  const sure = blocked.filter((r) => !r.otherDefaultRoute);
  const say = (r: SubnetReach) => `${r.subnetId} reaches no ${r.unreached.join(', ')}`;
  const next =
    'Give each subnet a route 0.0.0.0/0 to a NAT gateway (in a public subnet), or create VPC endpoints: interface ' +
    'endpoints with private DNS for secretsmanager and sqs, gateway endpoints for s3 and dynamodb associated with ' +
    "the subnets' route tables. Allow the db-poller's security group outbound on 443 (and to the database port).";
  if (sure.length === 0) {
    return {
      id,
      title,
      status: 'cannot-check',
      summary: `${unsure.map(say).join('; ')} through a NAT gateway or endpoint; their default route goes elsewhere (${unsure.map((r) => r.otherDefaultRoute).join(', ')}), which doctor cannot follow`,
      next: `If that route does not lead to a NAT: ${next}`,
      details,
    };
  }
  return { id, title, status: 'problem', summary: sure.map(say).join('; '), next, details };
}

function describeReach(r: SubnetReach): string {
  const via = [
    r.natGatewayId ? `NAT ${r.natGatewayId}` : 'no NAT',
    ...Object.entries(r.endpoints).map(([s, e]) => `${s} endpoint ${e}`),
    ...(r.otherDefaultRoute ? [`default route to ${r.otherDefaultRoute}`] : []),
    ...(r.internetGatewayId
      ? [
          `default route to ${r.internetGatewayId} (an internet gateway: no use to Lambda, whose interfaces get no public IP)`,
        ]
      : []),
  ];
  return `${r.subnetId} (route table ${r.routeTableId ?? 'none'}): ${via.join(', ')}`;
}
