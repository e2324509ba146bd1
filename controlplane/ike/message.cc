// Written in progress; see message.hh.
#include "message.hh"
