# The app AMI: the worker, its config, units and chain-of-trust key on top
# of the base AMI (deploy/provision.sh app). Two variants:
#   amazon-ebs.untrusted  every instance generates its own chain-of-trust
#                         key at first boot
#   amazon-ebs.trusted    carries the pool's trusted key (cot_key_file)
#
#   deploy/bin/build app untrusted|trusted
#                         (checks the variables, renders deploy/target/,
#                         builds the worker, then runs packer build)

variable "region" {
  type        = string
  description = "AWS region the AMI is built in"
}

variable "source_ami_name" {
  type        = string
  default     = "docker-worker-base-*"
  description = "name filter of the base AMI (the newest match is used)"
}

variable "source_ami_owners" {
  type        = list(string)
  default     = ["self"]
  description = "accounts owning the base AMI"
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

variable "worker_binary" {
  type        = string
  description = "the docker-worker binary to install (linux/amd64)"
}

variable "root_url" {
  type = string
}

variable "provisioner_id" {
  type    = string
  default = "proj-docker-worker"
}

variable "worker_type" {
  type = string
}

variable "worker_group" {
  type    = string
  default = "docker-worker"
}

variable "capacity" {
  type    = number
  default = 1
}

variable "allow_privileged" {
  type    = bool
  default = false
}

variable "idle_shutdown" {
  type    = bool
  default = true
}

variable "spot_termination" {
  type    = bool
  default = true
}

variable "cot_key_file" {
  type        = string
  default     = ""
  description = "trusted chain-of-trust signing key (trusted variant only)"
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
  env = [
    "DW_WORKER_BINARY=/tmp/docker-worker",
    "DW_ROOT_URL=${var.root_url}",
    "DW_PROVISIONER_ID=${var.provisioner_id}",
    "DW_WORKER_TYPE=${var.worker_type}",
    "DW_WORKER_GROUP=${var.worker_group}",
    "DW_CAPACITY=${var.capacity}",
    "DW_ALLOW_PRIVILEGED=${var.allow_privileged}",
    "DW_IDLE_SHUTDOWN=${var.idle_shutdown}",
    "DW_SPOT_TERMINATION=${var.spot_termination}",
    "DW_ON_EXIT=poweroff",
  ]
}

source "amazon-ebs" "untrusted" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = var.ssh_username
  ami_name      = "${var.ami_name_prefix}-${local.stamp}"
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

  tags = {
    Name     = var.ami_name_prefix
    Revision = var.revision
  }
}

source "amazon-ebs" "trusted" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = var.ssh_username
  ami_name      = "${var.ami_name_prefix}-trusted-${local.stamp}"
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

  tags = {
    Name     = "${var.ami_name_prefix}-trusted"
    Revision = var.revision
  }
}

build {
  sources = ["source.amazon-ebs.untrusted", "source.amazon-ebs.trusted"]

  provisioner "file" {
    source      = "${path.root}/../deploy"
    destination = "/tmp"
  }

  provisioner "file" {
    source      = var.worker_binary
    destination = "/tmp/docker-worker"
  }

  provisioner "file" {
    only        = ["amazon-ebs.trusted"]
    source      = var.cot_key_file
    destination = "/tmp/cot-signing.key"
  }

  provisioner "shell" {
    only             = ["amazon-ebs.untrusted"]
    environment_vars = local.env
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "/tmp/deploy/provision.sh app",
      "rm -rf /tmp/deploy /tmp/docker-worker",
    ]
  }

  provisioner "shell" {
    only             = ["amazon-ebs.trusted"]
    environment_vars = concat(local.env, ["DW_COT_TRUSTED_KEY=/tmp/cot-signing.key"])
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "/tmp/deploy/provision.sh app",
      "shred -u /tmp/cot-signing.key",
      "rm -rf /tmp/deploy /tmp/docker-worker",
    ]
  }

  post-processor "manifest" {
    output = "${path.root}/../deploy/target/packer-manifest.json"
  }
}
