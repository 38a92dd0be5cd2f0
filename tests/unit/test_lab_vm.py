"""Lab VMs (issue 11), pure parts: options, the plan and network, the identity disk, QEMU's command
line, the image's cache key and apt sources, and what the CLI refuses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from tests.helpers import cli
from wiremesh.errors import OperationError, ValidationError
from wiremesh.lab import Lab, image, procs, sshkeys, vm
from wiremesh.lab.inventory import write_inventory
from wiremesh.lab.network import lab_network
from wiremesh.lab.spec import LabSpec, make_spec
from wiremesh.lab.state import LabState, VmState
from wiremesh.lab.teardown import vm_markers
from wiremesh.lab.topology import plan_lab
from wiremesh.store.inventory_file import InventoryFile


def test_vms_come_last_as_public_hosts() -> None:
    spec = make_spec(1, {"a": 1}, {"home": 1}, vms=2)
    assert (spec.total, spec.namespace_hosts, spec.vms) == (5, 3, 2)
    plan = plan_lab(spec)
    rows = [(h.name, h.kind, h.role, str(h.public.ip) if h.public else None) for h in plan.hosts]
    assert rows == [
        ("lab1", "namespace", "public", "198.51.100.11"),
        ("lab2", "namespace", "site", "198.51.100.12"),
        ("lab3", "namespace", "nat", None),
        ("lab4", "vm", "public", "198.51.100.14"),
        ("lab5", "vm", "public", "198.51.100.15"),
    ]
    assert [h.tap for h in plan.vms] == ["wm-lab4-tap", "wm-lab5-tap"]
    assert plan.relay == "lab1"
    only = plan_lab(make_spec(vms=3))  # VMs instead of namespace hosts
    assert [(h.name, h.kind) for h in only.hosts] == [(f"lab{i}", "vm") for i in (1, 2, 3)]
    assert LabSpec.from_json(spec.to_json()) == spec
    assert LabSpec.from_json({"public": 2}) == LabSpec(public=2)  # a state from before VMs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vms": 9}, "--vms must be between 0 and 8"),
        ({"vms": -1}, "--vms must be between 0 and 8"),
        ({"vms": 1, "vm_memory": 64}, "--vm-memory must be between 192 and 4096"),
        ({"public": 55, "vms": 8}, "63 hosts; at most 60"),
        ({"public": None, "vms": 0}, "--hosts is required"),
    ],
)
def test_bad_vm_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        make_spec(**kwargs)  # type: ignore[arg-type]
    assert err.value.hint


def test_network_gives_vms_a_tap_and_no_namespace() -> None:
    net = lab_network(plan_lab(make_spec(1, vms=2, underlay_mtu={"lab3": 1400})))
    assert [ns.name for ns in net.namespaces] == ["wm-lab1"]
    assert [t.name for t in net.taps] == ["wm-lab2-tap", "wm-lab3-tap"]
    assert {"wm-lab2-tap", "wm-lab3-tap"} <= set(net.links)
    root = net.root_batch()
    assert root[-7:] == [
        "tuntap add dev wm-lab2-tap mode tap vnet_hdr",
        "link set wm-lab2-tap addrgenmode none",  # no address of the root's on it
        "link set wm-lab2-tap master wm-pub up",
        "tuntap add dev wm-lab3-tap mode tap vnet_hdr",
        "link set wm-lab3-tap mtu 1400",
        "link set wm-lab3-tap addrgenmode none",
        "link set wm-lab3-tap master wm-pub up",
    ]
    assert not any("addr add" in line and "tap" in line for line in root)


def test_identity_disk_holds_the_vms_own_files_only() -> None:
    key = sshkeys.generate_host_key()
    data = vm.identity_archive(
        name="lab3",
        mac=vm.mac_address(3),
        addresses=[IPv4Interface("198.51.100.13/24"), IPv6Interface("2001:db8::13/64")],
        mtu=1400,
        host_key=key,
        authorized_key="ssh-ed25519 AAAA test",
    )
    assert len(data) % 512 == 0  # whole sectors: the disk is the archive
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}

        def text(name: str) -> str:
            f = tar.extractfile(name)
            assert f is not None
            return f.read().decode()

        assert set(members) == {
            "root/.ssh",
            "etc/hostname",
            "etc/machine-id",
            "etc/systemd/network/10-wiremesh-lab.network",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub",
            "root/.ssh/authorized_keys",
        }  # nothing wiremesh manages (such as /etc/hosts): it is unpacked on every boot
        modes = {n: m.mode for n, m in members.items()}
        assert modes["root/.ssh"] == 0o700
        assert modes["etc/ssh/ssh_host_ed25519_key"] == 0o600
        assert modes["root/.ssh/authorized_keys"] == 0o600
        assert text("etc/hostname") == "lab3\n"
        assert text("etc/ssh/ssh_host_ed25519_key").encode() == key.private
        assert text("root/.ssh/authorized_keys") == "ssh-ed25519 AAAA test\n"
        assert text("etc/systemd/network/10-wiremesh-lab.network") == (
            "[Match]\nMACAddress=52:54:00:77:00:03\n\n[Link]\nMTUBytes=1400\n\n[Network]\n"
            "Address=198.51.100.13/24\nAddress=2001:db8::13/64\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
    assert "Gateway" not in vm.network_unit(vm.mac_address(1), [IPv4Interface("198.51.100.11/24")])


def test_mac_addresses_differ_per_host() -> None:
    macs = {vm.mac_address(i) for i in range(1, 61)}
    assert len(macs) == 60
    assert all(m.startswith("52:54:00:") for m in macs)


def test_qemu_command_line(tmp_path: Path) -> None:
    img = image.Image("bookworm-x", tmp_path / "img", {})
    files = vm.paths(tmp_path / "lab", "lab3")
    argv = vm.qemu_argv(
        name="lab3", image=img, files=files, tap="wm-lab3-tap", mac="52:54:00:77:00:03", memory=256
    )
    joined = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "-accel tcg,thread=multi,tb-size=128" in joined  # the code cache capped
    assert "-m 256" in joined
    assert f"-kernel {tmp_path}/img/vmlinuz -initrd {tmp_path}/img/initrd.img" in joined
    assert f"file={files.disk},if=virtio,format=qcow2" in joined
    assert f"file={files.identity},if=virtio,format=raw,readonly=on" in joined  # savevm skips it
    assert "tap,id=net0,ifname=wm-lab3-tap,script=no,downscript=no" in joined
    assert "mac=52:54:00:77:00:03" in joined
    assert f"unix:{files.qmp},server=on,wait=off" in joined
    assert len(str(files.qmp)) < 100 and len(str(files.control)) < 100  # sun_path limit
    assert files.qmp.parent == vm.RUN_DIR


def test_image_key_follows_packages_and_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    key = image.image_key()
    assert key.startswith("bookworm-") and key == image.image_key()
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "curl"))
    assert image.image_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(image, "BUILDER_VERSION", image.BUILDER_VERSION + 1)
    assert image.image_key() != key
    assert "wireguard-go" not in image.PACKAGES  # the kernel module, with no fallback to hide it
    assert "linux-image-cloud-amd64" in image.PACKAGES
    assert "MODULES=list" in image.RECIPE and "virtio_blk" in image.RECIPE


def test_apt_sources_are_the_machines_own(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("# only comments\n\n")
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text("Types: deb\nURIs: http://deb.example/debian\n")
    (d / "extra.list").write_text("deb http://other.example/debian bookworm main\n")
    (d / "old.list.disabled").write_text("deb http://disabled.example/ bookworm main\n")
    assert image.apt_sources(tmp_path) == [d / "debian.sources", d / "extra.list"]
    assert image.apt_sources(tmp_path / "none") == []


def test_missing_vm_programs_name_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "find_program", lambda name: None)
    with pytest.raises(OperationError) as err:
        image.check_vm_programs(build=True)
    for program, package in (
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
    ):
        assert f"{program} (package {package})" in err.value.message
    assert err.value.hint is not None
    assert "apt-get install e2fsprogs mmdebstrap qemu-system-x86 qemu-utils util-linux" in (
        err.value.hint
    )
    with pytest.raises(OperationError) as err:
        image.check_vm_programs(build=False)  # a cached image needs only QEMU
    assert "mmdebstrap" not in err.value.message


def test_cache_lists_complete_images_only(tmp_path: Path) -> None:
    assert image.list_images(tmp_path / "none") == []
    good = tmp_path / image.image_key()
    good.mkdir()
    for name in (image.ROOTFS, image.KERNEL, image.INITRD):
        (good / name).write_bytes(b"x")
    (good / image.MANIFEST).write_text('{"kind": "wiremesh-vm-image", "built": "2026"}')
    half = tmp_path / "bookworm-half"
    half.mkdir()
    (half / image.MANIFEST).write_text('{"kind": "wiremesh-vm-image"}')
    (tmp_path / ".build-x-1").mkdir()
    found = image.list_images(tmp_path)
    assert [i.key for i in found] == [image.image_key()]
    assert found[0].current
    assert image.find(cache=tmp_path) == found[0]


def test_inventory_of_a_vm_lab(tmp_path: Path) -> None:
    path = tmp_path / "wiremesh.toml"
    write_inventory(path, plan_lab(make_spec(1, vms=2)), "ssh_config")
    rows = [(n.name, str(n.endpoint), str(n.ssh)) for n in InventoryFile(path).load()]
    assert rows == [
        ("lab1", "198.51.100.11:51820", "root@lab1"),
        ("lab2", "198.51.100.12:51820", "root@lab2"),
        ("lab3", "198.51.100.13:51820", "root@lab3"),
    ]


def _vm_lab(tmp_path: Path) -> Lab:
    spec = make_spec(vms=1)
    state = LabState(dir=tmp_path, hosts_wanted=1, spec=spec)
    files = vm.paths(tmp_path, "lab1")
    me = procs.ref(os.getpid())  # stands in for a running QEMU
    state.vms = [
        VmState(
            *("lab1", 1, "wm-lab1-tap", "198.51.100.11", "vms/lab1"),
            *(str(files.qmp), str(files.control), "bookworm-x", me),
        )
    ]
    return Lab(state)


def test_commands_on_a_vm_go_over_ssh_quoted(tmp_path: Path) -> None:
    lab = _vm_lab(tmp_path)
    host = lab.host("lab1")
    assert (host.kind, host.netns, host.tap) == ("vm", None, "wm-lab1-tap")
    assert host.ssh_address == IPv4Address("198.51.100.11")
    argv = lab.exec_argv("lab1", ["sh", "-c", "echo 'a b' $X"])
    assert argv[:3] == ["ssh", "-F", str(tmp_path / "ssh_config")]
    assert f"ControlPath={vm.paths(tmp_path, 'lab1').control}" in argv
    assert argv[-3:] == ["lab1", "--", "sh -c 'echo '\"'\"'a b'\"'\"' $X'"]
    assert lab.vm_ssh_argv("lab1")[-1] == "lab1"  # a login shell
    assert "-t" in lab.vm_ssh_argv("lab1", tty=True)
    with pytest.raises(OperationError, match="namespace hosts only"):
        lab.stop_sshd("lab1")
    markers = vm_markers(LabState(dir=tmp_path, hosts_wanted=1, vms=lab._state.vms))
    assert markers == [f"{tmp_path}/vms/", f"{vm.RUN_DIR}/{vm.token(tmp_path)}"]


def test_processes_are_found_by_an_argument() -> None:
    marker = f"wiremesh-test-marker-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        # Popen may return (vfork) before the kernel has set up the new program's arguments.
        deadline = time.monotonic() + 5
        while proc.pid not in procs.pids_with_argument([marker]):
            assert time.monotonic() < deadline, "the process was not found by its argument"
            time.sleep(0.01)
        assert procs.pids_with_argument([]) == []
        assert os.getpid() not in procs.pids_with_argument(["python"])
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vms", "9"], "--vms must be between 0 and 8"),
        (["--vms", "1", "--vm-memory", "100"], "--vm-memory must be between"),
    ],
)
def test_cli_refuses_bad_vm_options_with_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    r = cli("lab", "up", *args, "--dir", tmp_path / "lab")
    assert r.code == 2
    assert message in r.err
    assert not (tmp_path / "lab").exists()
