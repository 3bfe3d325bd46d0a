# The base AMI: Debian with Docker, instance storage, loopback modules and
# sysctls (deploy/provision.sh base). Rebuild it when packages or the
# kernel change; the app AMI is built on top of it.
#
#   deploy/bin/build base      (checks the variables, then runs packer build)

variable "region" {
  type        = string
  description = "AWS region the AMI is built in"
}

variable "source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "name filter of the source AMI (the newest match is used)"
}

variable "source_ami_owners" {
  type        = list(string)
  default     = ["136693071363"]
  description = "accounts owning the source AMI (default: Debian's)"
}

variable "instance_type" {
  type    = string
  default = "m5d.large"
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "subnet of the build instance (empty: the default VPC)"
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "ami_name_prefix" {
  type    = string
  default = "docker-worker"
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "AWS accounts allowed to launch the AMI"
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "regions the AMI is copied to"
}

variable "revision" {
  type        = string
  default     = "unknown"
  description = "git revision of the checkout, recorded as a tag"
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "base" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = var.ssh_username
  ami_name      = "${var.ami_name_prefix}-base-${local.stamp}"
  ami_users     = var.ami_users
  ami_regions   = var.ami_regions

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = var.source_ami_owners
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 40
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 250
    delete_on_termination = true
  }

  tags = {
    Name     = "${var.ami_name_prefix}-base"
    Revision = var.revision
  }
}

build {
  sources = ["source.amazon-ebs.base"]

  provisioner "file" {
    source      = "${path.root}/../deploy"
    destination = "/tmp"
  }

  provisioner "shell" {
    inline = [
      "sudo /tmp/deploy/provision.sh base",
      "sudo rm -rf /tmp/deploy",
    ]
  }

  post-processor "manifest" {
    output = "${path.root}/../deploy/target/packer-manifest.json"
  }
}
