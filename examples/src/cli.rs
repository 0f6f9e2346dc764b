//! What the example programs share on their command lines.

use anyloop_backends::LoopChoice;
use clap::builder::{PossibleValuesParser, TypedValueParser};

/// The clap parser of a `--loop` option: anyloop's one backend chooser,
/// [`anyloop_backends::LoopChoice`], with every backend's name as a possible value (listed by
/// `--help`, completed by shells, suggested on a typo).
///
/// A backend this build left out is accepted here and refused when the loop is created, by
/// [`LoopChoice::create`], with an error that names the cargo feature that builds it.
///
/// ```
/// use anyloop_backends::LoopChoice;
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Args {
///     /// The loop to run on.
///     #[arg(long = "loop", default_value_t = LoopChoice::Select,
///           value_parser = anyloop_examples::cli::loop_choice())]
///     event_loop: LoopChoice,
/// }
///
/// let args = Args::try_parse_from(["prog", "--loop", "select-mio"]).unwrap();
/// assert_eq!(args.event_loop, LoopChoice::SelectMio);
/// let err = Args::try_parse_from(["prog", "--loop", "qt"]).err().unwrap();
/// assert!(err.to_string().contains("invalid value 'qt'"));
/// ```
pub fn loop_choice() -> impl TypedValueParser<Value = LoopChoice> {
    PossibleValuesParser::new(LoopChoice::ALL.map(LoopChoice::name))
        .try_map(|name| name.parse::<LoopChoice>())
}
