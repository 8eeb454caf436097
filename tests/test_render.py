"""Renderer: label order, escaping, both formats, parsed back by prometheus_client."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from gpu_exporter.model import Entity, Native, Sample
from gpu_exporter.render import (
    RenderOptions,
    dcgm_families,
    gpu_labels,
    native_families,
    render,
)


@dataclass(frozen=True)
class Spec:
    """Stand-in with CounterSpec's shape (the renderer reads these attributes only)."""

    name: str
    field_id: int
    prom_type: str
    help: str
    line: int = 1


GPU0 = Entity(gpu=0, uuid="GPU-aaaa", pci_bus_id="00000000:18:00.0",
              model_name="NVIDIA H100 80GB HBM3")
MIG = Entity(gpu=1, uuid="GPU-bbbb", pci_bus_id="00000000:2A:00.0",
             model_name="NVIDIA A100-SXM4-80GB", gi_id=7, gi_profile="1g.10gb",
             mig_uuid="MIG-cccc", mig_index=0)
PARENT1 = Entity(gpu=1, uuid="GPU-bbbb", pci_bus_id="00000000:2A:00.0",
                 model_name="NVIDIA A100-SXM4-80GB")
COUNTERS = (
    Spec("DCGM_FI_DEV_GPU_TEMP", 150, "gauge", "GPU temperature (in C)."),
    Spec("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 156, "counter", "Energy (in mJ)."),
    Spec("DCGM_FI_DEV_FB_USED", 252, "gauge", "Framebuffer used (in MiB)."),
    Spec("DCGM_FI_DRIVER_VERSION", 1, "label", "Driver version"),
)
OPTIONS = RenderOptions(hostname="node-a", hostname_label="Hostname")


def _samples() -> list[Sample]:
    return [
        Sample(GPU0, 150, 41.0),
        Sample(GPU0, 156, 123456789.0),
        Sample(PARENT1, 150, 35.0),
        Sample(MIG, 252, 1024.0, (("pod", "train-0"), ("namespace", "ml"), ("container", "c"))),
        Sample(GPU0, 1, "570.124.06"),
        Sample(PARENT1, 1, "570.124.06"),
    ]


def test_label_order_matches_dcgm_exporter() -> None:
    text = render(dcgm_families(_samples(), COUNTERS, OPTIONS)).decode()
    assert (
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-aaaa",pci_bus_id="00000000:18:00.0",'
        'device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",'
        'DCGM_FI_DRIVER_VERSION="570.124.06"} 41\n'
    ) in text
    # MIG: profile and GI id after modelName; label fields inherited from the parent GPU;
    # attributes sorted (container, namespace, pod).
    assert (
        'DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-bbbb",pci_bus_id="00000000:2A:00.0",'
        'device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="1g.10gb",'
        'GPU_I_ID="7",Hostname="node-a",DCGM_FI_DRIVER_VERSION="570.124.06",'
        'container="c",namespace="ml",pod="train-0"} 1024\n'
    ) in text


def test_label_rows_are_not_families_and_counters_keep_dcgm_names() -> None:
    text = render(dcgm_families(_samples(), COUNTERS, OPTIONS)).decode()
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in text
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" in text
    assert "_total" not in text
    assert "# TYPE DCGM_FI_DRIVER_VERSION" not in text
    # Families follow the counters file order.
    assert text.index("DCGM_FI_DEV_GPU_TEMP") < text.index("DCGM_FI_DEV_TOTAL_ENERGY")


def test_old_names_hostname_variants_and_blanks() -> None:
    options = RenderOptions(hostname="n", hostname_label="hostname", old_names=True,
                            replace_blanks=True)
    labels = dict(gpu_labels(GPU0, options))
    assert labels["uuid"] == "GPU-aaaa"
    assert "UUID" not in labels
    assert labels["hostname"] == "n"
    assert labels["modelName"] == "NVIDIA-H100-80GB-HBM3"
    text = render(dcgm_families(_samples(), COUNTERS, options)).decode()
    assert 'container_name="c",pod_name="train-0",pod_namespace="ml"' in text
    no_host = dict(gpu_labels(GPU0, RenderOptions(hostname=None)))
    assert "Hostname" not in no_host
    assert "hostname" not in no_host


def test_both_formats_parse_back_to_the_same_values() -> None:
    families = dcgm_families(_samples(), COUNTERS, OPTIONS)
    families += native_families(
        [Native("gpu_exporter_gpu_up", 1.0, entity=GPU0),
         Native("gpu_exporter_nvml_errors_total", 3.0,
                (("function", "f"), ("code", "GPU_IS_LOST")))],
        OPTIONS,
    )
    # prometheus_client's text parser appends _total to counter samples; Prometheus does not.
    # Compare names without that suffix; promtool checks the raw text in the golden test.
    text = {
        (s.name.removesuffix("_total"), tuple(sorted(s.labels.items()))): s.value
        for f in parse_text(render(families, "text").decode()) for s in f.samples
    }
    om_families = list(parse_openmetrics(render(families, "openmetrics").decode()))
    om = {
        (s.name.removesuffix("_total"), tuple(sorted(s.labels.items()))): s.value
        for f in om_families for s in f.samples
    }
    assert text == om
    assert len(text) == 6
    types = {f.name: f.type for f in om_families}
    # A DCGM counter has no _total, so OpenMetrics types it unknown to keep the name verbatim.
    assert types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "unknown"
    assert types["gpu_exporter_nvml_errors"] == "counter"


@given(st.text(), st.text())
def test_any_label_value_and_help_round_trip(value: str, help_text: str) -> None:
    entity = Entity(gpu=0, uuid=value, pci_bus_id="p", model_name=value)
    spec = Spec("DCGM_FI_DEV_GPU_TEMP", 150, "gauge", help_text)
    families = dcgm_families([Sample(entity, 150, 1.5)], (spec,), RenderOptions(hostname=value))
    for fmt, parser in (("text", parse_text), ("openmetrics", parse_openmetrics)):
        parsed = list(parser(render(families, fmt).decode()))  # type: ignore[arg-type]
        (sample,) = parsed[0].samples
        assert sample.labels["UUID"] == value
        assert sample.labels["modelName"] == value
        assert sample.value == 1.5


def test_numeric_fields_used_as_labels_print_like_upstream() -> None:
    counters = (Spec("DCGM_FI_DEV_GPU_TEMP", 150, "gauge", "t"),
                Spec("DCGM_FI_DEV_MIG_MODE", 67, "label", "MIG mode"))
    text = render(dcgm_families([Sample(GPU0, 150, 40.0), Sample(GPU0, 67, 1.0)], counters,
                                OPTIONS)).decode()
    assert 'DCGM_FI_DEV_MIG_MODE="1"}' in text
