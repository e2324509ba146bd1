// Written in progress; see config.hh.
#include "config.hh"
