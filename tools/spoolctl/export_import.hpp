// spoolctl export and import: messages out of the spool into .eml files or an mboxrd file,
// and back in from either, with the envelope carried in an X-Spoold-Envelope block. The
// file formats themselves are tools/spoolctl/mbox.hpp; the verb table calls these.
#pragma once

namespace spoold::spoolctl {

struct Context;

int verb_export(Context& ctx);
int verb_import(Context& ctx);

} // namespace spoold::spoolctl
