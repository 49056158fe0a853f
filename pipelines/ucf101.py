"""UCF-101 class names and one caption sentence per class.

Zero-shot UCF-101 evaluation (Make-A-Video and the papers that compare with it) prompts the
model with one template sentence per class; curation uses the same sentences to caption
action-recognition clips. Classes are in the dataset's own order (classInd.txt, 1-based there).
"""

from __future__ import annotations

# class name -> what the person in the clip does, written to follow "a person ..."
_ACTIONS: dict[str, str] = {
    "ApplyEyeMakeup": "applying eye makeup",
    "ApplyLipstick": "applying lipstick",
    "Archery": "shooting an arrow with a bow",
    "BabyCrawling": "crawling on the floor",
    "BalanceBeam": "doing gymnastics on a balance beam",
    "BandMarching": "marching in a band",
    "BaseballPitch": "pitching a baseball",
    "Basketball": "shooting a basketball",
    "BasketballDunk": "dunking a basketball",
    "BenchPress": "lifting a barbell on a bench press",
    "Biking": "riding a bike",
    "Billiards": "playing billiards",
    "BlowDryHair": "blow drying hair",
    "BlowingCandles": "blowing out candles on a cake",
    "BodyWeightSquats": "doing body weight squats",
    "Bowling": "bowling",
    "BoxingPunchingBag": "boxing a punching bag",
    "BoxingSpeedBag": "hitting a boxing speed bag",
    "BreastStroke": "swimming breaststroke",
    "BrushingTeeth": "brushing teeth",
    "CleanAndJerk": "lifting a barbell in a clean and jerk",
    "CliffDiving": "diving off a cliff into the sea",
    "CricketBowling": "bowling a cricket ball",
    "CricketShot": "hitting a cricket ball with a bat",
    "CuttingInKitchen": "cutting vegetables in a kitchen",
    "Diving": "diving from a springboard into a pool",
    "Drumming": "playing the drums",
    "Fencing": "fencing",
    "FieldHockeyPenalty": "taking a field hockey penalty",
    "FloorGymnastics": "doing floor gymnastics",
    "FrisbeeCatch": "catching a frisbee",
    "FrontCrawl": "swimming front crawl",
    "GolfSwing": "swinging a golf club",
    "Haircut": "cutting someone's hair",
    "Hammering": "hammering a nail",
    "HammerThrow": "throwing a hammer in athletics",
    "HandstandPushups": "doing handstand push-ups",
    "HandstandWalking": "walking on their hands",
    "HeadMassage": "giving a head massage",
    "HighJump": "doing a high jump",
    "HorseRace": "racing a horse",
    "HorseRiding": "riding a horse",
    "HulaHoop": "spinning a hula hoop",
    "IceDancing": "ice dancing",
    "JavelinThrow": "throwing a javelin",
    "JugglingBalls": "juggling balls",
    "JumpingJack": "doing jumping jacks",
    "JumpRope": "jumping rope",
    "Kayaking": "paddling a kayak",
    "Knitting": "knitting",
    "LongJump": "doing a long jump",
    "Lunges": "doing lunges",
    "MilitaryParade": "marching in a military parade",
    "Mixing": "mixing batter in a bowl",
    "MoppingFloor": "mopping the floor",
    "Nunchucks": "swinging nunchucks",
    "ParallelBars": "doing gymnastics on parallel bars",
    "PizzaTossing": "tossing pizza dough",
    "PlayingCello": "playing the cello",
    "PlayingDaf": "playing the daf",
    "PlayingDhol": "playing the dhol",
    "PlayingFlute": "playing the flute",
    "PlayingGuitar": "playing the guitar",
    "PlayingPiano": "playing the piano",
    "PlayingSitar": "playing the sitar",
    "PlayingTabla": "playing the tabla",
    "PlayingViolin": "playing the violin",
    "PoleVault": "doing a pole vault",
    "PommelHorse": "doing gymnastics on a pommel horse",
    "PullUps": "doing pull-ups",
    "Punch": "throwing punches in a boxing ring",
    "PushUps": "doing push-ups",
    "Rafting": "rafting down a river",
    "RockClimbingIndoor": "rock climbing indoors",
    "RopeClimbing": "climbing a rope",
    "Rowing": "rowing a boat",
    "SalsaSpin": "dancing a salsa spin",
    "ShavingBeard": "shaving a beard",
    "Shotput": "throwing a shot put",
    "SkateBoarding": "riding a skateboard",
    "Skiing": "skiing down a slope",
    "Skijet": "riding a jet ski",
    "SkyDiving": "skydiving",
    "SoccerJuggling": "juggling a soccer ball",
    "SoccerPenalty": "taking a soccer penalty kick",
    "StillRings": "doing gymnastics on still rings",
    "SumoWrestling": "sumo wrestling",
    "Surfing": "surfing a wave",
    "Swing": "swinging on a swing",
    "TableTennisShot": "hitting a table tennis ball",
    "TaiChi": "practicing tai chi",
    "TennisSwing": "swinging a tennis racket",
    "ThrowDiscus": "throwing a discus",
    "TrampolineJumping": "jumping on a trampoline",
    "Typing": "typing on a keyboard",
    "UnevenBars": "doing gymnastics on uneven bars",
    "VolleyballSpiking": "spiking a volleyball",
    "WalkingWithDog": "walking with a dog",
    "WallPushups": "doing push-ups against a wall",
    "WritingOnBoard": "writing on a board",
    "YoYo": "playing with a yo-yo",
}

# the one class whose subject is not "a person"
_SUBJECTS: dict[str, str] = {"BabyCrawling": "a baby"}

UCF101_CLASSES: list[str] = list(_ACTIONS)


def ucf101_prompt(class_name: str) -> str:
    """The evaluation sentence for one class, e.g. ``"a person playing the guitar."``."""
    try:
        action = _ACTIONS[class_name]
    except KeyError:
        raise KeyError(f"{class_name!r} is not a UCF-101 class") from None
    return f"{_SUBJECTS.get(class_name, 'a person')} {action}."


def ucf101_prompts() -> list[str]:
    """One sentence per class, in class order."""
    return [ucf101_prompt(name) for name in UCF101_CLASSES]
