#!/usr/bin/env python3
"""Writes the fake hosts `hw detect` is tested on: the sysfs, procfs, /dev and /etc files that
detection reads, for an Azure L8as_v5, L32as_v5 and L8as_v4 and a 2-socket ODM server. The trees
are committed; run this (from anywhere) to write them again after changing it.

Each host also shows the exclusions: the OS disk (root file system, a remote disk), a mounted
disk, a partitioned disk, one holding a file system signature, one held by md RAID, swap, and one
already formatted by edgeblob."""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_HEAD = 4096  # a blank device's first bytes, as far as the fixture needs them


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text if isinstance(text, bytes) else text + "\n")


def device_bytes(signature):
    if signature == "ext4":
        b = bytearray(2048)
        b[0x438:0x43A] = b"\x53\xef"
        return bytes(b)
    if signature == "xfs":
        return b"XFSB" + bytes(DEVICE_HEAD - 4)
    if signature == "edgeblob":
        return b"EDGEBLOB" + bytes(DEVICE_HEAD - 8)
    if signature == "raid":
        b = bytearray(DEVICE_HEAD * 2)
        b[0x1000:0x1004] = b"\xfc\x4e\x2b\xa9"
        return bytes(b)
    if signature == "gpt":
        b = bytearray(DEVICE_HEAD)
        b[510:512] = b"\x55\xaa"
        b[512:520] = b"EFI PART"
        return bytes(b)
    return bytes(DEVICE_HEAD)


def host(name, *, vendor, product, azure, cpus, siblings, nodes, mem_kb, ctrls, mounts, swaps=(), nics=()):
    root = os.path.join(HERE, name)
    shutil.rmtree(root, ignore_errors=True)
    write(root, "sys/class/dmi/id/sys_vendor", vendor)
    write(root, "sys/class/dmi/id/product_name", product)
    if azure:
        write(root, "etc/waagent.conf", "Provisioning.Agent=auto")
    write(root, "sys/devices/system/cpu/online", cpus)
    write(root, "sys/devices/system/cpu/cpu0/topology/thread_siblings_list", siblings)
    for i, (cpulist, kb) in enumerate(nodes):
        write(root, f"sys/devices/system/node/node{i}/cpulist", cpulist)
        write(root, f"sys/devices/system/node/node{i}/meminfo", f"Node {i} MemTotal:       {kb} kB")
    write(root, "proc/meminfo", f"MemTotal:       {mem_kb} kB\nMemFree:        1024 kB")
    minor = 0
    for c in ctrls:
        cdir = f"sys/class/nvme/{c['name']}"
        for k in ("model", "serial", "firmware_rev", "transport", "address"):
            write(root, f"{cdir}/{k}", c[k])
        write(root, f"{cdir}/device/numa_node", str(c["numa"]))
        ns = c["name"] + "n1"
        write(root, f"{cdir}/{ns}/nsid", "1")
        bdir = f"sys/block/{ns}"
        write(root, f"{bdir}/dev", f"259:{minor}")
        minor += 1
        write(root, f"{bdir}/size", str(c["bytes"] // 512))
        write(root, f"{bdir}/queue/logical_block_size", str(c.get("lbs", 512)))
        for p in c.get("partitions", ()):
            write(root, f"{bdir}/{ns}p{p}/dev", f"259:{minor}")
            write(root, f"{bdir}/{ns}p{p}/partition", str(p))
            minor += 1
        for h in c.get("holders", ()):
            write(root, f"{bdir}/holders/{h}", "")
        write(root, f"dev/{ns}", device_bytes(c.get("signature")))
    out = []
    for i, (dev, point, fs) in enumerate(mounts):
        # A mount names its device by major:minor, as the tree just written numbers it.
        namespace = dev.split("p")[0] if "p" in dev[5:] else dev
        rel = f"sys/block/{namespace}/dev" if dev == namespace else f"sys/block/{namespace}/{dev}/dev"
        with open(os.path.join(root, rel)) as f:
            majmin = f.read().strip()
        out.append(f"{20 + i} 1 {majmin} / {point} rw,relatime shared:{i + 1} - {fs} /dev/{dev} rw")
    out.append("30 1 0:5 / /proc rw,nosuid - proc proc rw")
    write(root, "proc/self/mountinfo", "\n".join(out))
    write(root, "proc/swaps", "\n".join(["Filename Type Size Used Priority"] + [f"/dev/{s} partition 8388604 0 -2" for s in swaps]))
    os.makedirs(os.path.join(root, "sys/class/net/lo"), exist_ok=True)
    write(root, "sys/class/net/lo/speed", "-1")
    for n in nics:
        d = f"sys/class/net/{n['name']}"
        write(root, f"{d}/speed", str(n.get("speed", -1)))
        write(root, f"{d}/device/numa_node", str(n.get("numa", -1)))
        os.symlink(f"../../../bus/pci/drivers/{n['driver']}", os.path.join(root, d, "device/driver"))
        if n.get("master"):
            write(root, f"{d}/master", n["master"])


AZ_OS = dict(model="MSFT NVMe Accelerator v1.0", firmware_rev="2.0", transport="pcie", numa=0, bytes=32 * 2**30, partitions=(1, 14, 15))
AZ_LOCAL = "Microsoft NVMe Direct Disk v2"
AZ_NICS = [
    dict(name="eth0", driver="hv_netvsc", speed=-1),
    dict(name="enP30832s1", driver="mlx5_core", speed=-1, master="eth0"),
]
AZ_MOUNTS = [("nvme0n1p1", "/", "ext4"), ("nvme0n1p15", "/boot/efi", "vfat")]

host(
    "l8as_v5", vendor="Microsoft Corporation", product="Virtual Machine", azure=True,
    cpus="0-7", siblings="0-1", nodes=[("0-7", 65536 * 1024)], mem_kb=65536 * 1024,
    ctrls=[
        dict(AZ_OS, name="nvme0", serial="SN-OS-L8V5", address="c05b:00:00.0"),
        dict(name="nvme1", model=AZ_LOCAL, serial="7C2F0A1D95B84A61", firmware_rev="1.0", transport="pcie",
             address="8e3d:00:00.0", numa=0, bytes=1_920_383_410_176),
    ],
    mounts=[("nvme0n1p1", "/", "ext4")], nics=AZ_NICS,
)

host(
    "l32as_v5", vendor="Microsoft Corporation", product="Virtual Machine", azure=True,
    cpus="0-31", siblings="0-1", nodes=[("0-31", 262144 * 1024)], mem_kb=262144 * 1024,
    ctrls=[
        dict(AZ_OS, name="nvme0", serial="SN-OS-L32V5", address="c05b:00:00.0"),
        # cloud-init formatted the first local disk as ext4 and mounted it at /mnt.
        dict(name="nvme1", model=AZ_LOCAL, serial="0E4C81B2D7A34F10", firmware_rev="1.0", transport="pcie",
             address="9a51:00:00.0", numa=0, bytes=3_840_755_982_336, signature="ext4"),
        dict(name="nvme2", model=AZ_LOCAL, serial="5B19E07F3C2D4A88", firmware_rev="1.0", transport="pcie",
             address="a4f2:00:00.0", numa=0, bytes=3_840_755_982_336),
    ],
    mounts=AZ_MOUNTS + [("nvme1n1", "/mnt", "ext4")], nics=AZ_NICS,
)

host(
    "l8as_v4", vendor="Microsoft Corporation", product="Virtual Machine", azure=True,
    cpus="0-7", siblings="0-1", nodes=[("0-7", 65536 * 1024)], mem_kb=65536 * 1024,
    ctrls=[
        dict(AZ_OS, name="nvme0", serial="SN-OS-L8V4", address="c05b:00:00.0"),
        dict(name="nvme1", model=AZ_LOCAL, serial="1F00A7C3", firmware_rev="1.0", transport="pcie",
             address="1b2c:00:00.0", numa=0, bytes=480_103_981_056),
        dict(name="nvme2", model=AZ_LOCAL, serial="1F00A7C4", firmware_rev="1.0", transport="pcie",
             address="2c3d:00:00.0", numa=0, bytes=480_103_981_056, partitions=(1,), signature="gpt"),
        dict(name="nvme3", model=AZ_LOCAL, serial="1F00A7C5", firmware_rev="1.0", transport="pcie",
             address="3d4e:00:00.0", numa=0, bytes=480_103_981_056, signature="xfs"),
        dict(name="nvme4", model=AZ_LOCAL, serial="1F00A7C6", firmware_rev="1.0", transport="pcie",
             address="4e5f:00:00.0", numa=0, bytes=480_103_981_056, signature="edgeblob"),
    ],
    mounts=AZ_MOUNTS, nics=AZ_NICS,
)

ODM_DATA = "SAMSUNG MZQL27T6HBLA-00A07"
odm_ctrls = [
    dict(name="nvme0", model="SAMSUNG MZ1L2960HCJR-00A07", serial="S665NE0T100123", firmware_rev="GDC7302Q",
         transport="pcie", address="0000:01:00.0", numa=0, bytes=960_197_124_096, partitions=(1, 2, 3), signature="gpt"),
]
for i, (addr, numa) in enumerate([("0000:41:00.0", 0), ("0000:42:00.0", 0), ("0000:43:00.0", 0), ("0000:44:00.0", 0),
                                  ("0000:c1:00.0", 1), ("0000:c2:00.0", 1), ("0000:c3:00.0", 1), ("0000:c4:00.0", 1)]):
    c = dict(name=f"nvme{i + 1}", model=ODM_DATA, serial=f"S6CKNA0W{200100 + i}", firmware_rev="GDC5902Q",
             transport="pcie", address=addr, numa=numa, bytes=7_681_501_126_656, lbs=4096)
    if i == 7:
        c["holders"] = ["md127"]
        c["signature"] = "raid"
    odm_ctrls.append(c)

host(
    "odm_2s_8nvme", vendor="Supermicro", product="AS -2125HS-TNR", azure=False,
    cpus="0-191", siblings="0,96", nodes=[("0-47,96-143", 805306368), ("48-95,144-191", 805306368)],
    mem_kb=1610612736,
    ctrls=odm_ctrls,
    mounts=[("nvme0n1p2", "/", "xfs"), ("nvme0n1p1", "/boot/efi", "vfat")], swaps=["nvme0n1p3"],
    nics=[
        dict(name="eno1", driver="igb", speed=1000, numa=0),
        dict(name="ens1f0np0", driver="mlx5_core", speed=200000, numa=0),
        dict(name="ens2f0np0", driver="mlx5_core", speed=200000, numa=1),
    ],
)
