"""Who may do what, and where: roles, permissions, org-subtree reach, sign-in protection."""
