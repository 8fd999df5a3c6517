"""dagster-k8s's job executor with two additions, both in a small subclass of its step handler:

- co-location from the run's tags (stock dagster-k8s builds step pods without run tags): the pod
  affinity and node pinning of `colocate.py`, scoped to the run and the step's pool;
- a step whose pod stays Unschedulable longer than `unschedulable_timeout` fails (its Job deleted)
  with the step, node id, pool and the scheduler's reason, instead of waiting forever. The run then
  stops: it cannot succeed, so the steps in flight fail at their next health check (their Jobs deleted)
  and no further step is launched, rather than every independent branch running to its end first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from dagster import DagsterEvent, Field, IntSource, Noneable, StringSource, executor
from dagster import _check as check
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandlerContext,
)
from dagster._utils.merger import merge_dicts
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, K8sStepHandler
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from dagster_k8s.launcher import K8sRunLauncher

from ..defs.translator import TAG_PREFIX
from .colocate import RUN_ID_LABEL, Colocation, affinity, colocation_for_run
from .placement import POOL_LABEL

DEFAULT_UNSCHEDULABLE_TIMEOUT = 300.0


def default_colocation() -> Colocation:
    return Colocation.parse(os.environ.get("STEPFLOW_COLOCATE"), Colocation())


def default_unschedulable_timeout() -> float:
    return float(os.environ.get("STEPFLOW_UNSCHEDULABLE_TIMEOUT", DEFAULT_UNSCHEDULABLE_TIMEOUT))


class StepflowK8sStepHandler(K8sStepHandler):
    def __init__(
        self,
        *args: Any,
        colocation: Colocation | None = None,
        unschedulable_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.colocation = colocation or default_colocation()
        self.unschedulable_timeout = (
            default_unschedulable_timeout() if unschedulable_timeout is None else unschedulable_timeout
        )
        # Affinity per step Job, computed once at launch (health checks rebuild the context too).
        self._affinity: dict[str, dict[str, Any]] = {}
        # Set once a step of this run could not be scheduled: the run stops (see the module doc).
        self._stopped: str | None = None

    @property
    def name(self) -> str:
        return "StepflowK8sStepHandler"

    def _step_tags(self, ctx: StepHandlerContext) -> Mapping[str, str]:
        return ctx.step_tags[self._get_step_key(ctx)]

    def _get_container_context(self, step_handler_context: StepHandlerContext) -> K8sContainerContext:
        context = super()._get_container_context(step_handler_context)
        job_name = self._get_k8s_step_job_name(step_handler_context)
        if job_name not in self._affinity:
            self._affinity[job_name] = self._colocation_affinity(step_handler_context, context)
        extra = self._affinity[job_name]
        if not extra:
            return context
        own = dict(context.run_k8s_config.pod_spec_config.get("affinity") or {})
        return context.merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig(pod_spec_config={"affinity": {**own, **extra}})
            )
        )

    def _colocation_affinity(self, ctx: StepHandlerContext, context: K8sContainerContext) -> dict[str, Any]:
        colocation = colocation_for_run(ctx.dagster_run.tags, self.colocation)
        pool = self._step_tags(ctx).get(f"{TAG_PREFIX}/pool")
        if colocation.topology_key is None or not pool:
            return {}
        return affinity(colocation, self._domains_of_run(ctx.dagster_run.run_id, pool, colocation, context))

    def _domains_of_run(
        self, run_id: str, pool: str, colocation: Colocation, context: K8sContainerContext
    ) -> list[str]:
        """Nodes (or zones) where this run's earlier pods of `pool` were placed, finished or not."""
        core = self._api_client.core_api
        pods = core.list_namespaced_pod(
            context.namespace, label_selector=f"{RUN_ID_LABEL}={run_id},{POOL_LABEL}={pool}"
        ).items
        nodes = {p.spec.node_name for p in pods if p.spec.node_name}
        if colocation.scope == "node":
            return sorted(nodes)
        key = cast(str, colocation.topology_key)
        return sorted({(core.read_node(n).metadata.labels or {}).get(key, "") for n in nodes} - {""})

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        if self._stopped:
            # The executor answers an exception here by terminating the steps in flight and failing the run.
            raise RuntimeError(
                f"not launching {self._get_step_key(step_handler_context)}: the run stopped: {self._stopped}"
            )
        yield from super().launch_step(step_handler_context)

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        result = super().check_step_health(step_handler_context)
        if not result.is_healthy:
            return result
        job_name = self._get_k8s_step_job_name(step_handler_context)
        namespace = self._get_container_context(step_handler_context).namespace
        step_key = self._get_step_key(step_handler_context)
        if self._stopped:
            self._api_client.delete_job(job_name=job_name, namespace=namespace)
            return CheckStepHealthResult.unhealthy(f"step {step_key} stopped: {self._stopped}")
        reason = self._unschedulable(job_name, namespace)
        if reason is None:
            return result
        tags = self._step_tags(step_handler_context)
        # Delete the Job so that its pod does not start later, after the run has failed.
        self._api_client.delete_job(job_name=job_name, namespace=namespace)
        message = (
            f"step {step_key} (node {tags.get(f'{TAG_PREFIX}/node_id', '?')}, "
            f"pool {tags.get(f'{TAG_PREFIX}/pool', '?')}) could not be scheduled: {reason}"
        )
        self._stopped = message
        return CheckStepHealthResult.unhealthy(message)

    def _unschedulable(self, job_name: str, namespace: str | None) -> str | None:
        """Why the Job's pod has not started, once it has waited longer than the timeout: the
        scheduler's message (Unschedulable), or the Job controller's when it cannot create the pod."""
        core = self._api_client.core_api
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
        ).items
        now = datetime.now(UTC)
        for pod in pods:
            if pod.status.phase != "Pending":
                continue
            for cond in pod.status.conditions or ():
                if cond.type != "PodScheduled" or cond.status != "False" or cond.reason != "Unschedulable":
                    continue
                waited = (
                    now - (cond.last_transition_time or pod.metadata.creation_timestamp)
                ).total_seconds()
                if waited >= self.unschedulable_timeout:
                    return (
                        f"pod {pod.metadata.name} Unschedulable for {waited:.0f}s "
                        f"(limit {self.unschedulable_timeout:g}s): {cond.message}"
                    )
        if pods:
            return None
        # No pod at all: an invalid pod spec (or a quota) makes the Job controller retry forever.
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={job_name},reason=FailedCreate"
        ).items
        if not events:
            return None
        first = min(e.first_timestamp or e.event_time or now for e in events)
        waited = (now - first).total_seconds()
        if waited < self.unschedulable_timeout:
            return None
        last = max(events, key=lambda e: e.last_timestamp or e.event_time or now)
        return f"Job {job_name} could not create its pod for {waited:.0f}s: {last.message}"


STEPFLOW_K8S_EXECUTOR_CONFIG = merge_dicts(
    _K8S_EXECUTOR_CONFIG_SCHEMA,
    {
        "colocate": Field(
            Noneable(StringSource),
            is_required=False,
            description="Default co-location of a run's pods (per pool) when the run has no "
            "stepflow/colocate tag: node|zone|none[:required|:preferred]. "
            "Default $STEPFLOW_COLOCATE or none.",
        ),
        "unschedulable_timeout": Field(
            Noneable(float),
            is_required=False,
            description="Seconds a step's pod may stay Unschedulable before the step fails. "
            f"Default $STEPFLOW_UNSCHEDULABLE_TIMEOUT or {DEFAULT_UNSCHEDULABLE_TIMEOUT:g}.",
        ),
        "check_step_health_interval_seconds": Field(
            IntSource,
            is_required=False,
            default_value=20,
            description="How often the run worker checks its running steps' Jobs and pods.",
        ),
    },
)


@executor(
    name="stepflow_k8s",
    config_schema=STEPFLOW_K8S_EXECUTOR_CONFIG,
    requirements=multiple_process_executor_requirements(),
)
def stepflow_k8s_executor(init_context: InitExecutorContext) -> Executor:
    """`k8s_job_executor` (same config) with run-scoped co-location and an Unschedulable timeout."""
    launcher = init_context.instance.run_launcher
    run_launcher = launcher if isinstance(launcher, K8sRunLauncher) else None
    cfg: Mapping[str, Any] = init_context.executor_config
    container_context = K8sContainerContext(
        image_pull_policy=cfg.get("image_pull_policy"),
        image_pull_secrets=cfg.get("image_pull_secrets"),
        service_account_name=cfg.get("service_account_name"),
        env_config_maps=cfg.get("env_config_maps"),
        env_secrets=cfg.get("env_secrets"),
        env_vars=cfg.get("env_vars"),
        volume_mounts=cfg.get("volume_mounts"),
        volumes=cfg.get("volumes"),
        labels=cfg.get("labels"),
        namespace=cfg.get("job_namespace"),
        resources=cfg.get("resources"),
        scheduler_name=cfg.get("scheduler_name"),
        security_context=cfg.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg.get("step_k8s_config", {})),
    )
    if "load_incluster_config" in cfg:
        load_incluster_config = bool(cfg["load_incluster_config"])
    else:
        load_incluster_config = run_launcher.load_incluster_config if run_launcher else True
    if "kubeconfig_file" in cfg:
        kubeconfig_file = cfg["kubeconfig_file"]
    else:
        kubeconfig_file = run_launcher.kubeconfig_file if run_launcher else None
    colocate = cfg.get("colocate")
    return StepDelegatingExecutor(
        StepflowK8sStepHandler(
            image=cfg.get("job_image"),
            container_context=container_context,
            load_incluster_config=load_incluster_config,
            kubeconfig_file=kubeconfig_file,
            per_step_k8s_config=cfg.get("per_step_k8s_config", {}),
            enable_owner_references=bool(cfg.get("enable_owner_references", False)),
            colocation=Colocation.parse(colocate) if colocate else None,
            unschedulable_timeout=cfg.get("unschedulable_timeout"),
        ),
        retries=RetryMode.from_config(cfg["retries"]),  # type: ignore[arg-type]
        max_concurrent=check.opt_int_elem(cfg, "max_concurrent"),
        tag_concurrency_limits=check.opt_list_elem(cfg, "tag_concurrency_limits"),
        should_verify_step=True,
        step_dependency_config=StepDependencyConfig.from_config(cfg.get("step_dependency_config")),
        check_step_health_interval_seconds=cfg["check_step_health_interval_seconds"],
    )
