//! placeholder until the select backend lands
