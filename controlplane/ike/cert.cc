// Written in progress; see cert.hh.
#include "cert.hh"
