/**
 * deploy/kubernetes, checked offline: every object against the Kubernetes
 * API schemas (kubernetes-models, and its Prometheus Operator CRDs), the
 * choices the docs promise (probes, drain, security, selectors), and the
 * Prometheus rules and Grafana dashboard generated from monitoring/
 * (UPDATE_KUBERNETES=1, `npm run kubernetes`, rewrites them).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';

import { loadConfig } from '../src/config.js';

const root = new URL('../../', import.meta.url).pathname;
const dir = `${root}deploy/kubernetes/`;
const read = (p: string) => readFileSync(`${root}${p}`, 'utf8');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests are checked by the schemas, not by TypeScript
type Manifest = Record<string, any>;
const models: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

function validate(m: Manifest) {
  const Model = models[`${m.apiVersion}/${m.kind}`];
  assert.ok(Model, `no schema for ${m.apiVersion} ${m.kind}`);
  new Model(m as never).validate();
}

const kustomization = () => parse(read('deploy/kubernetes/kustomization.yaml')) as { resources: string[] };
const manifests = () => kustomization().resources.map((file) => parse(read(`deploy/kubernetes/${file}`)) as Manifest);
const byKind = (kind: string) => manifests().find((m) => m.kind === kind)!;

const GENERATED = '# Generated from monitoring/ by `npm run kubernetes`: edit the sources there, never this file.\n';

/** YAML as `npm run format` leaves it, so the generated files pass `prettier --check`. */
async function yaml(file: string, object: unknown) {
  const options = await resolveConfig(`${root}${file}`);
  return format(GENERATED + stringify(object, { lineWidth: 0 }), { ...options, parser: 'yaml' });
}

/** The PrometheusRule holding every group of monitoring/prometheus/rules/*.yml. */
function prometheusRule() {
  const files = readdirSync(`${root}monitoring/prometheus/rules`).filter((f) => f.endsWith('.yml'));
  const groups = files
    .sort()
    .flatMap((f) => (parse(read(`monitoring/prometheus/rules/${f}`)) as { groups: [] }).groups);
  const rule = { apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'flashsale' } };
  return { ...rule, spec: { groups } };
}

/** The dashboard as a ConfigMap that Grafana's dashboard sidecar (label grafana_dashboard) loads. */
function dashboardConfigMap() {
  const data = { 'flashsale.json': read('monitoring/grafana/dashboards/flashsale.json') };
  const metadata = { name: 'flashsale-dashboard', labels: { grafana_dashboard: '1' } };
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata, data };
}

describe('deploy/kubernetes (kustomize)', () => {
  it('lists every manifest of the folder, and each is valid against the Kubernetes API schemas', () => {
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .sort();
    assert.deepEqual([...kustomization().resources].sort(), files);
    for (const m of manifests()) validate(m);
  });

  it('the schema check has teeth: a wrong type or a missing required field is refused', () => {
    const deployment = byKind('Deployment');
    assert.throws(() => validate({ ...deployment, spec: { ...deployment.spec, replicas: 'three' } }));
    const noSelector = { ...deployment.spec } as Manifest;
    delete noSelector.selector;
    assert.throws(() => validate({ ...deployment, spec: noSelector }));
  });

  it('the ConfigMap and Secret are a configuration the service accepts', () => {
    const env = { ...byKind('ConfigMap').data, ...byKind('Secret').stringData } as Record<string, string>;
    const config = loadConfig(env);
    for (const name of Object.keys(env)) assert.ok(name in config, `${name} is not a setting of the service`);
  });

  it('probes ask the process, not its shared dependencies, and a pod drains within terminationGracePeriodSeconds', () => {
    const pod = byKind('Deployment').spec.template.spec;
    const [container] = pod.containers;
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      assert.ok(container[probe], `${probe} missing`);
      assert.notEqual(container[probe].httpGet?.path, '/health', `${probe} on /health fails on a shared outage`);
    }
    const preStopSeconds = Number(container.lifecycle.preStop.exec.command[1]);
    const { REQUEST_TIMEOUT_MS } = loadConfig(byKind('ConfigMap').data);
    assert.ok(preStopSeconds + REQUEST_TIMEOUT_MS / 1000 < pod.terminationGracePeriodSeconds);
  });

  it('runs as non-root on a read-only filesystem with every capability dropped, with resources requested', () => {
    const pod = byKind('Deployment').spec.template.spec;
    const [container] = pod.containers;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    assert.ok(container.resources.limits.memory);
  });

  it('the Service, PodDisruptionBudget, autoscaler and ServiceMonitor all find the Deployment and its port', () => {
    const deployment = byKind('Deployment');
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
    const matches = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    assert.ok(matches(deployment.spec.selector.matchLabels));
    const service = byKind('Service');
    assert.ok(matches(service.spec.selector));
    assert.ok(matches(byKind('PodDisruptionBudget').spec.selector.matchLabels));
    assert.equal(byKind('HorizontalPodAutoscaler').spec.scaleTargetRef.name, deployment.metadata.name);
    const port = deployment.spec.template.spec.containers[0].ports[0];
    assert.equal(service.spec.ports[0].targetPort, port.name);
    const monitor = byKind('ServiceMonitor');
    assert.equal(monitor.spec.endpoints[0].port, service.spec.ports[0].name);
    assert.equal(monitor.spec.endpoints[0].path, '/metrics');
    // The rules and the dashboard select job="flashsale": the job is the Service's name.
    assert.equal(service.metadata.name, 'flashsale');
  });

  it('the PrometheusRule and the dashboard ConfigMap are what monitoring/ generates (UPDATE_KUBERNETES=1 rewrites them)', async () => {
    for (const [file, object] of [
      ['deploy/kubernetes/monitoring/prometheusrule.yaml', prometheusRule()],
      ['deploy/kubernetes/monitoring/dashboard.yaml', dashboardConfigMap()],
    ] as const) {
      const generated = await yaml(file, object);
      if (process.env.UPDATE_KUBERNETES === '1') writeFileSync(`${root}${file}`, generated);
      assert.equal(read(file), generated, `${file} drifted from monitoring/: run npm run kubernetes`);
    }
  });
});
