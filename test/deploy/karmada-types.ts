// Karmada's PropagationPolicy and ClusterPropagationPolicy (policy.karmada.io/v1alpha1) as
// TypeScript types, written from the openAPIV3Schema of Karmada's CRD
// (charts/karmada/_crds/bases/policy/policy.karmada.io_propagationpolicies.yaml, controller-gen
// v0.18). No npm package carries them. Every field of the spec is listed, so tsc rejects an
// unknown or misspelt one; the sub-objects edgeferry does not use (failover, suspension,
// schedulePriority, replicaScheduling, spreadConstraints) are typed field by field too.

import type { LabelSelector, ObjectMeta } from 'kubernetes-types/meta/v1.js';

interface FieldSelector {
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

interface ClusterAffinity {
  clusterNames?: string[];
  exclude?: string[];
  fieldSelector?: FieldSelector;
  labelSelector?: LabelSelector;
}

interface ResourceSelector {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name?: string;
  labelSelector?: LabelSelector;
}

interface Placement {
  clusterAffinity?: ClusterAffinity;
  clusterAffinities?: (ClusterAffinity & { affinityName: string })[];
  clusterTolerations?: {
    key?: string;
    operator?: string;
    value?: string;
    effect?: string;
    tolerationSeconds?: number;
  }[];
  spreadConstraints?: {
    spreadByField?: 'cluster' | 'region' | 'zone' | 'provider';
    spreadByLabel?: string;
    maxGroups?: number;
    minGroups?: number;
  }[];
  replicaScheduling?: {
    replicaSchedulingType?: 'Duplicated' | 'Divided';
    replicaDivisionPreference?: 'Aggregated' | 'Weighted';
    weightPreference?: {
      dynamicWeight?: 'AvailableReplicas';
      staticWeightList?: { targetCluster: ClusterAffinity; weight: number }[];
    };
  };
}

export interface PropagationSpec {
  resourceSelectors: ResourceSelector[];
  placement?: Placement;
  activationPreference?: 'Lazy';
  association?: boolean;
  conflictResolution?: 'Abort' | 'Overwrite';
  dependentOverrides?: string[];
  failover?: {
    application?: {
      decisionConditions: { tolerationSeconds?: number };
      gracePeriodSeconds?: number;
      purgeMode?: 'Immediately' | 'Graciously' | 'Never';
      statePreservation?: { rules: { aliasLabelName: string; jsonPath: string }[] };
    };
  };
  preemption?: 'Always' | 'Never';
  preserveResourcesOnDeletion?: boolean;
  priority?: number;
  propagateDeps?: boolean;
  schedulePriority?: { priorityClassName: string; priorityClassSource: 'KubePriorityClass' };
  schedulerName?: string;
  suspension?: { dispatching?: boolean; dispatchingOnClusters?: { clusterNames?: string[] } };
}

export interface PropagationPolicy {
  apiVersion: 'policy.karmada.io/v1alpha1';
  kind: 'PropagationPolicy';
  metadata: ObjectMeta;
  spec: PropagationSpec;
}

export interface ClusterPropagationPolicy {
  apiVersion: 'policy.karmada.io/v1alpha1';
  kind: 'ClusterPropagationPolicy';
  metadata: ObjectMeta;
  spec: PropagationSpec;
}
