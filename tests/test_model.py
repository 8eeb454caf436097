from gpu_exporter.model import Entity


def test_device_label_and_mig_flag() -> None:
    whole = Entity(gpu=3, uuid="GPU-x", pci_bus_id="00000000:18:00.0", model_name="NVIDIA H100")
    mig = Entity(
        gpu=3, uuid="GPU-x", pci_bus_id="00000000:18:00.0", model_name="NVIDIA H100",
        gi_id=7, gi_profile="1g.10gb",
    )
    assert whole.device == "nvidia3"
    assert not whole.is_mig
    assert mig.is_mig
