// Written in progress; see proposal.hh.
#include "proposal.hh"
