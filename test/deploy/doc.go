// Package deploy tests the host provisioning scripts in deploy/: it runs
// them inside a Debian rootfs built with debootstrap and imported into
// Docker, with the kernel steps (kernel packages, module loading, sysctls,
// LVM on real disks) recorded instead of run, and checks what they leave
// behind.
package deploy
