// hymba.cpp public API.
#pragma once

#include "hymba/bench.h"
#include "hymba/config.h"
#include "hymba/chat_template.h"
#include "hymba/convert.h"
#include "hymba/engine.h"
#include "hymba/error.h"
#include "hymba/info.h"
#include "hymba/model.h"
#include "hymba/quality.h"
#include "hymba/tokenizer.h"
