// Written in progress; see crypto.hh.
#include "crypto.hh"
