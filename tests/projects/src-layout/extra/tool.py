NAME = "force-included tool"
