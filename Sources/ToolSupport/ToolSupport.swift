import BDev
