// Builds the Kubernetes subnet manager from flanneld's options (the composition root's entry point for
// --kube-subnet-mgr). The environment is an argument so that tests can pass their own.

import type { FlanneldOptions } from "../../cli/flanneld-options.ts";
import type { Logger } from "../../log/logger.ts";
import { KubeSubnetManager } from "./manager.ts";

export async function createKubeSubnetManager(
  o: Pick<
    FlanneldOptions,
    "kubeApiUrl" | "kubeconfigFile" | "kubeAnnotationPrefix" | "netConfigPath" | "setNodeNetworkUnavailable"
  >,
  logger: Logger,
  extra: { env?: Readonly<Record<string, string | undefined>>; signal?: AbortSignal } = {},
): Promise<KubeSubnetManager> {
  return KubeSubnetManager.create(
    {
      kubeApiUrl: o.kubeApiUrl,
      kubeconfigFile: o.kubeconfigFile,
      annotationPrefix: o.kubeAnnotationPrefix,
      netConfigPath: o.netConfigPath,
      setNodeNetworkUnavailable: o.setNodeNetworkUnavailable,
      env: extra.env ?? process.env,
      logger,
    },
    extra.signal,
  );
}
