"""Kernel definitions (TE/TIR compute), one file per structure; their schedules live in schedules/cpu/."""
