"""How a batch reaches its hosts: one transport interface over SSH, EC2 Instance Connect and SSM Run Command, and the host-key pins."""
