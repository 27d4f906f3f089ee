/* libyaml from Debian's libyaml-dev: the event parser under the policy and agent configuration readers. */
#include <yaml.h>
