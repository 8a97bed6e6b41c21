/* region.h -- private pieces of the region part (issue 7: phrase
 * localization): proposals, region features, Flickr30K Entities data. */
#ifndef DUET_REGION_H
#define DUET_REGION_H

#include "duet.h"
#include "core/core.h"

#endif
