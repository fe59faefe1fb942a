# The edgeblob image for Azure L-series VMs (Lasv5, Lasv4): Debian 12, Generation 2 with the NVMe
# disk controller, the edgeblob package installed with its units enabled and not started, published
# to an Azure Compute Gallery. Nothing in it names a node: the node's identity, its disk ledger and
# its configuration come at first boot (cloud-init, user-data.yaml), secrets never in custom data.
#
#   packer build -var-file=site.pkrvars.hcl .
#
# The gallery's image definition must exist first, for Generation 2 with NVMe, and Packer 1.10 or
# later needs the Azure plugin (`packer plugins install github.com/hashicorp/azure`): README.md
# here. (No `required_plugins` block: the template stays readable by the Packer 1.6 that Debian
# ships, which CI validates it with.)

variable "subscription_id" {
  type        = string
  description = "The subscription holding the gallery."
}

variable "resource_group" {
  type        = string
  description = "The resource group of the gallery."
}

variable "gallery_name" {
  type = string
}

variable "image_name" {
  type        = string
  default     = "edgeblob"
  description = "The gallery image definition (Generation 2, DiskControllerTypes SCSI,NVMe)."
}

variable "image_version" {
  type        = string
  description = "The gallery image version, e.g. 0.1.0."
}

variable "location" {
  type    = string
  default = "westus3"
}

variable "replication_regions" {
  type    = list(string)
  default = []
}

variable "deb" {
  type        = string
  description = "The edgeblob .deb to install (packaging/deb/build.sh)."
}

# An L-series size, so that the build VM has the same NVMe controllers as the VMs the image runs on.
variable "build_vm_size" {
  type    = string
  default = "Standard_L8as_v5"
}

source "azure-arm" "edgeblob" {
  use_azure_cli_auth = true
  subscription_id    = var.subscription_id
  location           = var.location
  vm_size            = var.build_vm_size

  os_type         = "Linux"
  image_publisher = "Debian"
  image_offer     = "debian-12"
  image_sku       = "12-gen2"

  shared_image_gallery_destination {
    subscription        = var.subscription_id
    resource_group      = var.resource_group
    gallery_name        = var.gallery_name
    image_name          = var.image_name
    image_version       = var.image_version
    replication_regions = var.replication_regions
  }

  azure_tags = {
    product = "edgeblob"
    version = var.image_version
  }
}

build {
  sources = ["source.azure-arm.edgeblob"]

  provisioner "file" {
    source      = var.deb
    destination = "/tmp/edgeblob.deb"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh -eu '{{ .Path }}'"
    inline = [
      "apt-get update",
      "DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/edgeblob.deb nvme-cli",
      "rm /tmp/edgeblob.deb",
      # The image's promises: units enabled and not running, profiles present, no node in it.
      "systemctl is-enabled edgeblob.service edgeblob-prepare.service",
      "! systemctl is-active --quiet edgeblob.service",
      "test -f /usr/share/edgeblob/hw-profiles/azure/Standard_L8as_v5.toml",
      "test ! -e /var/lib/edgeblob/ledger.toml",
      "edgeblob-admin hw detect > /dev/null",
      # Last: the Azure agent forgets this VM's user and identity.
      "/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync",
    ]
  }
}
