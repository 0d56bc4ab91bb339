"""The memory curriculum: the user tells the bot facts, chats about other things for 0 to 8
exchanges, then asks for them back, and the bot answers with the exact fact.

Facts are a name, a pet's name, a city, a favourite food or colour, a number, a job and a
code word, in English and Korean. Values come from large pools (hand-written lists mixed
with thousands of invented names and words) so the model learns to copy what it was told
from its state rather than to recite a list. The bot says it does not know a fact it was
not told, and a corrected fact replaces the old one. Short distances are the most common
(an echo right away, then 0, 1, 2 ... exchanges), so the copy is learned where the
gradient reaches before it has to last.

`invented_word` is also what bench/memory_recall.py uses (with its own seed) to make fresh
names that occur nowhere in the corpus.
"""

from __future__ import annotations

import random
from typing import Callable

from compose import Budget, fill

# --- value pools -------------------------------------------------------------------------

EN_NAMES = """Mina Odette Rafael Priya Tomas Yuki Amara Jonah Leila Mateo Ingrid Kofi Anika Dmitri
Sofia Malik Hana Elliot Zara Caleb Noor Felix Imani Soren Lucia Arjun Greta Omar Beatriz Kai
Nadia Hugo Esme Tariq Maren Diego Ayla Bruno Thea Ravi Clara Idris Selin Otto Freya Emeka Iris
Lorenzo Mei Callum Zainab Viktor June Farid Astrid Nikhil Rosa Tobias Leilani Yusuf Elodie Ines
Mirela Oskar Pilar Quentin Rhea Samir Talia Ulla Vera Wren Xavier Yara Zeke Alma Benedikt Cyra
Dalia Emil Fenna Gideon Halima Ivo Jorunn Kasimir Liesel Milo Nuria Orla Pavel Ronja Silas""".split()
EN_PETS = """Biscuit Pepper Mochi Luna Noodle Waffles Ziggy Pickles Bean Sprout Marbles Tofu Nacho
Clover Pumpkin Dumpling Scout Juniper Toast Olive Pebble Socks Maple Comet Rolo Button Fig Kiwi
Peanut Sushi Bubbles Gizmo Hazel Jellybean Muffin Nugget Poppy Rascal Sesame Truffle""".split()
EN_PET_KINDS = ["dog", "cat", "hamster", "rabbit", "parrot", "turtle", "goldfish", "guinea pig",
                "puppy", "kitten", "lizard", "ferret"]
EN_CITIES = """Lisbon Osaka Nairobi Toronto Seville Krakow Hanoi Lima Tbilisi Porto Busan Quito Oslo
Valencia Dublin Accra Melbourne Montreal Kyoto Bergen Tallinn Lyon Bologna Cusco Dakar Cairo
Taipei Manila Denver Austin Glasgow Bristol Leeds Halifax Perth Hobart Auckland Nantes Utrecht
Ghent Zagreb Riga Vilnius Tunis Mombasa Recife Cordoba Bilbao Graz Salzburg Malmo Aarhus Tampere
Galway Cork Sapporo Daegu Incheon Fukuoka Sendai Chiang Mai Kraków""".split()
EN_FOODS = ["dumplings", "ramen", "lasagna", "tacos", "pho", "bibimbap", "paella", "curry",
            "pancakes", "sushi", "falafel", "risotto", "pierogi", "kimchi fried rice", "mac and cheese",
            "tteokbokki", "lentil soup", "fish and chips", "pad thai", "shakshuka", "empanadas",
            "goulash", "burritos", "gnocchi", "banana bread", "jollof rice", "pavlova", "ceviche",
            "udon", "apple pie", "moussaka", "tamales", "dal", "samosas", "crepes", "bulgogi",
            "miso soup", "pizza", "waffles", "spring rolls", "couscous", "tiramisu"]
EN_COLOURS = ["blue", "green", "teal", "orange", "purple", "yellow", "red", "pink", "navy",
              "lilac", "mint green", "coral", "crimson", "turquoise", "olive green", "sky blue",
              "maroon", "gold", "silver", "beige", "lavender", "emerald", "charcoal grey",
              "mustard yellow", "peach", "indigo", "burgundy", "sea green", "amber", "white", "black"]
EN_JOBS = ["nurse", "teacher", "baker", "electrician", "accountant", "software developer",
           "bus driver", "pharmacist", "architect", "chef", "librarian", "firefighter", "dentist",
           "graphic designer", "farmer", "plumber", "translator", "carpenter", "vet", "journalist",
           "physiotherapist", "barista", "pilot", "social worker", "mechanic", "data analyst",
           "gardener", "photographer", "lawyer", "tailor", "lab technician", "postal worker",
           "florist", "dance teacher", "bookkeeper", "paramedic", "welder", "tour guide"]
KO_NAMES_A = list("민서지하도예수윤채은유주시다현태준나소가아재세승우연혜정보라진동영경선")
KO_NAMES_B = list("준연우윤아민원희율진서은현빈호린수경영훈솔별담결찬슬희인혁규온")
KO_PETS = ["초코", "콩이", "보리", "두부", "몽이", "까미", "뭉치", "호두", "설이", "밤이", "구름",
           "망고", "치즈", "라떼", "쿠키", "별이", "복실이", "해피", "모카", "루루", "토리", "감자",
           "순두", "도토리", "꼬미", "나비", "짱구", "봄이", "달이", "마루"]
KO_PET_KINDS = ["강아지", "고양이", "햄스터", "토끼", "앵무새", "거북이", "금붕어", "고슴도치"]
KO_CITIES = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "제주", "전주", "춘천",
             "강릉", "포항", "여수", "목포", "청주", "천안", "창원", "경주", "안동", "속초", "통영",
             "원주", "김해", "세종", "파주", "군산", "순천", "진주", "거제", "도쿄", "파리", "런던",
             "뉴욕", "시드니", "베를린", "방콕", "하노이", "토론토", "마드리드", "리스본", "오사카"]
KO_FOODS = ["김치찌개", "된장찌개", "비빔밥", "떡볶이", "불고기", "삼겹살", "냉면", "칼국수", "김밥",
            "순두부찌개", "잡채", "제육볶음", "갈비찜", "콩국수", "라면", "짜장면", "짬뽕", "돈가스",
            "초밥", "파스타", "피자", "카레", "쌀국수", "샌드위치", "팥빙수", "호떡", "붕어빵", "수제비",
            "닭갈비", "감자탕", "부대찌개", "설렁탕", "오므라이스", "김치볶음밥", "떡국", "만두"]
KO_COLOURS = ["파란색", "초록색", "빨간색", "노란색", "보라색", "분홍색", "주황색", "하늘색",
              "남색", "연두색", "회색", "검은색", "흰색", "갈색", "민트색", "베이지색", "청록색",
              "금색", "은색", "살구색", "연보라색", "자주색", "올리브색", "와인색"]
KO_JOBS = ["간호사", "교사", "제빵사", "회계사", "개발자", "버스 기사", "약사", "건축가", "요리사",
           "사서", "소방관", "치과의사", "디자이너", "농부", "번역가", "목수", "수의사", "기자",
           "물리치료사", "바리스타", "조종사", "사회복지사", "정비사", "데이터 분석가", "정원사",
           "사진작가", "변호사", "연구원", "우체국 직원", "꽃집 사장", "피아노 선생님", "공무원",
           "은행원", "미용사", "택배 기사", "대학생", "대학원생", "웹툰 작가"]

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl",
          "sh", "th", "tr", "j", "h", "w", "y", "ch", "st", "gr", "fl"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y", "ie", "oa"]
CODAS = ["", "", "", "n", "l", "r", "s", "th", "x", "m", "k", "nd", "rt"]
KO_INITIALS = [0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 15, 16, 17, 18]  # ㄱ ㄴ ㄷ ㄹ ㅁ ㅂ ㅅ ㅇ ㅈ ㅊ ㅋ ㅌ ㅍ ㅎ
KO_VOWELS_COMMON = [0, 1, 4, 6, 8, 12, 13, 17, 18, 20]  # ㅏ ㅐ ㅓ ㅕ ㅗ ㅛ ㅜ ㅠ ㅡ ㅣ
KO_FINALS_COMMON = [0, 0, 0, 0, 4, 8, 16, 21, 1, 17]  # none, ㄴ ㄹ ㅁ ㅇ ㄱ ㅂ


def invented_word(lang: str, rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable made-up word: Latin syllables for English, Hangul for Korean."""
    n = rng.randint(*syllables)
    if lang == "ko":
        return "".join(chr(0xAC00 + (rng.choice(KO_INITIALS) * 21 + rng.choice(KO_VOWELS_COMMON)) * 28
                           + rng.choice(KO_FINALS_COMMON)) for _ in range(n))
    word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(n))
    return word.capitalize()


def name(lang: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return invented_word(lang, rng)
    if lang == "ko":
        return rng.choice(KO_NAMES_A) + rng.choice(KO_NAMES_B)
    return rng.choice(EN_NAMES)


def pet(lang: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return invented_word(lang, rng, (1, 3) if lang == "en" else (2, 2))
    return rng.choice(KO_PETS if lang == "ko" else EN_PETS)


def code_word(lang: str, rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    word = invented_word("en" if rng.random() < 0.5 else lang, rng, syllables)
    return word.lower() if rng.random() < 0.7 else f"{word.lower()}{rng.randint(2, 99)}"


def city(lang: str, rng: random.Random) -> str:
    if rng.random() < 0.25:
        return invented_word(lang, rng)
    return rng.choice(KO_CITIES if lang == "ko" else EN_CITIES)


VALUES: dict[str, Callable[[str, random.Random], str]] = {
    "name": name,
    "pet": pet,
    "city": city,
    "food": lambda lang, rng: rng.choice(KO_FOODS if lang == "ko" else EN_FOODS),
    "colour": lambda lang, rng: rng.choice(KO_COLOURS if lang == "ko" else EN_COLOURS),
    "number": lambda lang, rng: str(rng.choice([rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 9999)])),
    "job": lambda lang, rng: rng.choice(KO_JOBS if lang == "ko" else EN_JOBS),
    "code": code_word,
}

MADE_UP = ("name", "pet", "city", "code")  # the kinds a drill can make all made-up (compose.py --invented-syllables)


def value(kind: str, lang: str, rng: random.Random, invented: tuple[int, int] | None) -> str:
    """A fact's value: from VALUES, or with `invented` (a syllable range) a made-up word of that
    length for the kinds in MADE_UP, so no length or list is more likely than another."""
    if invented is None or kind not in MADE_UP:
        return VALUES[kind](lang, rng)
    return code_word(lang, rng, invented) if kind == "code" else invented_word(lang, rng, invented)


# --- what is said ---------------------------------------------------------------------------
# For each fact: how the user tells it, how the bot acknowledges it (echoing the value), how
# the user asks for it, how the bot answers, what it says when it was never told, and how a
# correction is made and acknowledged. {v} is the value, {old} the corrected one, {kind} a
# pet's kind. Korean particles as in compose.py ({v|이에요}).

EN = {
    "name": {
        "tell": ["My name is {v}.", "Hi, I'm {v}.", "hello! call me {v}", "I'm {v}, nice to meet you.",
                 "hey there, my name's {v}", "Hi! My name is {v}, by the way.", "i'm {v}"],
        "echo": ["Nice to meet you, {v}!", "Hello {v}, good to meet you.", "Hi {v}, I'll remember your name!",
                 "Welcome, {v}, what a nice name!", "Great to meet you, {v}.", "Hi {v}, nice to meet you too!"],
        "ask": ["What is my name?", "what's my name?", "Do you remember my name?", "Who am I?",
                "Can you tell me my name?", "what did I say my name was?", "do you know my name?"],
        "answer": ["Your name is {v}.", "You're {v}!", "You told me your name is {v}.", "Of course: you're {v}.",
                   "It's {v}.", "Your name is {v}, you told me at the start."],
        "unknown": ["You haven't told me your name yet. What is it?", "I don't know your name yet; you never said it.",
                    "Hmm, you didn't tell me your name. What should I call you?",
                    "I can't say, you haven't told me your name in this chat.",
                    "No name so far in our chat. Would you like to tell me?",
                    "I'd love to know, but you haven't shared your name with me."],
        "correct": ["Actually, my name is {v}, not {old}.", "Sorry, I mistyped: it's {v}, not {old}.",
                    "wait, my name is actually {v}", "Correction: call me {v} instead of {old}."],
        "ack": ["Oh sorry, {v} it is.", "Got it, your name is {v}, not {old}.", "Thanks for correcting me, {v}.",
                "No problem, I'll call you {v} from now on."],
    },
    "pet": {
        "tell": ["I have a {kind} called {v}.", "My {kind}'s name is {v}.", "my {kind} is named {v}",
                 "We just got a {kind}! Her name is {v}.", "I live with a {kind} named {v}.",
                 "Our {kind} is called {v}."],
        "echo": ["{v} is a lovely name for a {kind}!", "Aw, a {kind} named {v}! How old is {v}?",
                 "Say hi to {v} from me!", "A {kind} called {v}, how sweet.", "{v} sounds like a happy {kind}."],
        "ask": ["What's my pet's name?", "what is my {kind} called?", "Do you remember my {kind}'s name?",
                "what did I name my pet?", "Can you remember what my {kind} is called?"],
        "answer": ["Your {kind} is called {v}.", "Your pet's name is {v}.", "It's {v}, your {kind}.",
                   "You told me your {kind} is named {v}.", "{v}, your {kind}!"],
        "unknown": ["You haven't told me about a pet yet. Do you have one?",
                    "I don't know your pet's name; you haven't mentioned one in this chat.",
                    "You never told me a pet's name. What is it called?",
                    "No pet has come up in our chat yet, so I don't know.",
                    "I can't tell, you haven't told me about any pet.",
                    "Hmm, I don't remember you mentioning a pet. Tell me about it?"],
        "correct": ["Oops, my {kind} is actually called {v}, not {old}.", "Sorry, the name is {v}, not {old}.",
                    "wait no, my {kind}'s name is {v}"],
        "ack": ["Got it: your {kind} is {v}, not {old}.", "Oh, {v}, sorry about that!", "Noted, {v} it is for your {kind}."],
    },
    "city": {
        "tell": ["I live in {v}.", "I'm from {v}.", "i live in {v} these days", "We moved to {v} last year.",
                 "My home town is {v}.", "I'm writing to you from {v}."],
        "echo": ["What is it like living in {v}?", "Oh, {v}, I hope the weather is kind there today.",
                 "Nice, do you like living in {v}?", "So you're in {v}, how long have you lived there?",
                 "{v} sounds like a great place to live."],
        "ask": ["Where do I live?", "what city am I in?", "Do you remember where I live?",
                "Which city did I say I live in?", "where am I from?"],
        "answer": ["You live in {v}.", "In {v}.", "You told me you live in {v}.", "You're in {v}.",
                   "Your city is {v}."],
        "unknown": ["You haven't told me where you live.", "I don't know where you live; you haven't said.",
                    "No idea, you never told me your city. Where are you?",
                    "I can't know that unless you tell me. Which city are you in?",
                    "You haven't mentioned a city in our chat yet.",
                    "I don't know, we haven't talked about where you live."],
        "correct": ["Actually I live in {v} now, not {old}.", "Sorry, I meant {v}, not {old}.",
                    "we moved, so it's {v} now"],
        "ack": ["Got it, {v} now instead of {old}.", "Oh, {v}, I'll remember that.", "Thanks, so you're in {v}."],
    },
    "food": {
        "tell": ["My favourite food is {v}.", "I love {v} more than anything.", "i could eat {v} every day",
                 "{v} is my favourite food.", "Nothing beats {v} for me."],
        "echo": ["{v} is a great favourite!", "Mmm, do you make {v} yourself?", "I can see why, {v} is delicious.",
                 "Good choice, {v} is so comforting.", "{v} every day, I'd be tempted too!"],
        "ask": ["What's my favourite food?", "what food do I love?", "Do you remember my favourite food?",
                "What did I say I could eat every day?", "which food is my favourite?"],
        "answer": ["Your favourite food is {v}.", "You love {v}.", "{v}, you told me!",
                   "It's {v}.", "You said {v} is your favourite."],
        "unknown": ["You haven't told me your favourite food yet.", "I don't know, you never said what food you like best.",
                    "No idea yet! What is your favourite food?", "We haven't talked about food, so I can't say.",
                    "You haven't mentioned a favourite dish to me.", "I can't guess that; tell me and I'll remember."],
        "correct": ["Actually, my favourite is {v}, not {old}.", "Hmm, no, {v} beats {old} for me.",
                    "changed my mind, it's {v}"],
        "ack": ["Got it, {v} over {old}.", "{v} it is, then!", "Fair enough, {v} is a great favourite too."],
    },
    "colour": {
        "tell": ["My favourite colour is {v}.", "I love the colour {v}.", "{v} is my favourite colour.",
                 "my fave colour is {v}", "I always pick {v} when I can."],
        "echo": ["{v} is a beautiful colour!", "Nice, {v}! Is your room {v} too?", "{v}, good choice.",
                 "I can picture it: lots of {v}.", "A fan of {v}, that's a lovely one!"],
        "ask": ["What's my favourite colour?", "which colour do I like best?", "Do you remember my favourite colour?",
                "what colour did I say I love?"],
        "answer": ["Your favourite colour is {v}.", "You love {v}.", "It's {v}.", "{v}, you told me.",
                   "You said {v}."],
        "unknown": ["You haven't told me your favourite colour.", "I don't know your favourite colour yet.",
                    "You never said! Which colour do you like best?", "No colour has come up in our chat yet.",
                    "I can't say, you haven't told me a colour.", "Tell me your favourite colour and I'll remember it."],
        "correct": ["Actually my favourite colour is {v}, not {old}.", "no wait, it's {v}, not {old}",
                    "I changed my mind: {v}."],
        "ack": ["Got it, {v} instead of {old}.", "{v} then, noted!", "Okay, your favourite is {v} now."],
    },
    "number": {
        "tell": ["My lucky number is {v}.", "Remember this number for me: {v}.", "my locker number is {v}",
                 "Please remember {v} for me.", "The number I need to remember is {v}.", "my room number is {v}"],
        "echo": ["Got it, {v}.", "{v}, I'll keep that in mind.", "Okay, remembering {v}.", "Noted: {v}.",
                 "{v}, I won't forget it."],
        "ask": ["What was the number?", "what number did I tell you?", "Do you remember my number?",
                "What's the number I asked you to remember?", "which number did I give you?"],
        "answer": ["The number is {v}.", "It was {v}.", "You told me {v}.", "{v}.", "Your number is {v}."],
        "unknown": ["You haven't given me a number yet.", "I don't know, you never told me a number.",
                    "No number so far. Which one should I remember?", "You didn't tell me any number in this chat.",
                    "I can't say, no number has come up yet.", "There's no number to recall; you haven't given me one."],
        "correct": ["Sorry, the number is {v}, not {old}.", "correction: {v}, not {old}", "Actually make that {v}."],
        "ack": ["Got it, {v} instead of {old}.", "Okay, {v} now.", "Updated: {v}."],
    },
    "job": {
        "tell": ["I work as a {v}.", "I'm a {v}.", "my job? i'm a {v}", "I've been a {v} for five years.",
                 "I just started working as a {v}."],
        "echo": ["A {v}, that must keep you busy!", "Being a {v} sounds interesting, do you enjoy it?",
                 "Oh, what's the best part of being a {v}?", "So you're a {v}, nice!",
                 "A {v}, that's an important job."],
        "ask": ["What's my job?", "what do I do for work?", "Do you remember my job?", "What did I say I work as?"],
        "answer": ["You're a {v}.", "You work as a {v}.", "You told me you're a {v}.", "A {v}!", "Your job is {v}."],
        "unknown": ["You haven't told me what you do.", "I don't know your job yet; you haven't said.",
                    "You never mentioned your work. What do you do?", "We haven't talked about your job.",
                    "I can't tell, you haven't told me your job.", "No idea yet! What do you work as?"],
        "correct": ["Actually, I'm a {v} now, not a {old}.", "sorry, I meant {v}, not {old}", "I switched jobs: I'm a {v} now."],
        "ack": ["Got it, you're a {v} now.", "Oh, a {v}, thanks for telling me!", "Okay, {v} instead of {old}."],
    },
    "code": {
        "tell": ["The code word is {v}.", "Remember this code word: {v}.", "our secret word is {v}",
                 "Keep this word for me: {v}.", "Password for today: {v}."],
        "echo": ["Got it, the code word is {v}.", "{v}, I'll remember it.", "Okay, {v} is safe with me.",
                 "Code word {v}, noted.", "{v}, I'll keep it."],
        "ask": ["What's the code word?", "what was the secret word?", "Do you remember the code word?",
                "Tell me the word I asked you to keep.", "what's the password?"],
        "answer": ["The code word is {v}.", "It's {v}.", "{v}.", "You told me {v}.", "The word is {v}."],
        "unknown": ["You haven't given me a code word.", "I don't know any code word; you never told me one.",
                    "There's no code word yet. What should it be?", "No secret word has come up in this chat.",
                    "I can't tell you, you haven't shared a code word.", "You didn't give me a word to keep."],
        "correct": ["Change of plan: the code word is {v}, not {old}.", "Sorry, the word is {v}, not {old}.",
                    "new code word: {v}"],
        "ack": ["Got it, {v} replaces {old}.", "Okay, the code word is {v} now.", "Updated: {v}."],
    },
}

KO = {
    "name": {
        "tell": ["제 이름은 {v|이에요}.", "안녕하세요, 저는 {v|이에요}.", "저 {v|이에요}", "제 이름은 {v|이라고} 해요.",
                 "안녕! 나 {v|이야}", "처음 뵙겠습니다, {v|이라고} 합니다."],
        "echo": ["{v}님, 반가워요!", "반가워요, {v}님!", "{v}님이군요, 만나서 반가워요.", "{v}님, 이름 기억할게요!",
                 "안녕하세요 {v}님, 잘 부탁해요."],
        "ask": ["제 이름이 뭐예요?", "내 이름 기억해요?", "제 이름 알아요?", "제가 누구라고 했죠?", "내 이름 뭐였지?",
                "제 이름 말해 볼래요?"],
        "answer": ["{v}님이에요.", "이름은 {v|이에요}.", "{v}님이라고 하셨어요.", "당연히 기억하죠, {v}님!",
                   "{v}님이잖아요."],
        "unknown": ["아직 이름을 안 알려 주셨어요. 이름이 뭐예요?", "이 대화에서 이름을 들은 적이 없어서 몰라요.",
                    "음, 이름을 말씀하신 적이 없어요. 뭐라고 부르면 될까요?", "아직 모르겠어요. 이름을 알려 주시면 기억할게요.",
                    "이름은 아직 못 들었어요.", "이름을 알려 주신 적이 없어서 대답할 수가 없어요."],
        "correct": ["아, 제 이름은 {old|이} 아니라 {v|이에요}.", "잘못 썼어요, {v|이에요}.", "사실 제 이름은 {v|이에요}."],
        "ack": ["아 죄송해요, {v}님이군요!", "알겠어요, {old|이} 아니라 {v}님이요.", "고쳐 주셔서 고마워요, {v}님."],
    },
    "pet": {
        "tell": ["저희 집 {kind} 이름은 {v|이에요}.", "{kind|을} 키우는데 이름이 {v|이에요}.", "우리 {kind} 이름은 {v|이야}",
                 "{kind} 한 마리 키워요. 이름은 {v|이에요}.", "요즘 {kind|이랑} 살아요, 이름은 {v|이에요}."],
        "echo": ["{v}, 이름이 너무 귀여워요!", "{kind} {v|이라니}, 몇 살이에요?", "{v}한테 안부 전해 주세요!",
                 "{v|은} 정말 사랑받는 {kind}겠네요.", "{kind} 이름이 {v|이군요}, 예뻐요."],
        "ask": ["제 반려동물 이름이 뭐였죠?", "우리 {kind} 이름 기억해요?", "제 {kind} 이름이 뭐예요?",
                "제가 키우는 동물 이름 알아요?"],
        "answer": ["{kind} 이름은 {v|이에요}.", "{v|이에요}, 귀여운 {kind}요.", "{v|이라고} 하셨어요.", "{v}, 기억하고 있어요!"],
        "unknown": ["아직 반려동물 얘기는 안 하셨어요. 키우는 동물이 있어요?", "반려동물 이름은 못 들었어요.",
                    "키우는 동물 얘기를 한 적이 없어서 몰라요.", "이 대화에서는 반려동물 이름이 안 나왔어요.",
                    "반려동물이 있다고 하신 적이 없어요. 이름이 뭐예요?", "음, 모르겠어요. 알려 주시면 기억할게요."],
        "correct": ["아, {kind} 이름은 {old|이} 아니라 {v|이에요}.", "잘못 말했어요, {v|이에요}.", "사실 이름은 {v|이에요}."],
        "ack": ["알겠어요, {kind} 이름은 {v|이군요}.", "아, {v}, 미안해요!", "{v|으로} 기억할게요."],
    },
    "city": {
        "tell": ["저는 {v}에 살아요.", "{v}에서 왔어요.", "요즘 {v}에 살고 있어요", "작년에 {v|으로} 이사했어요.",
                 "제 고향은 {v|이에요}."],
        "echo": ["{v}, 거기 살기 어때요?", "{v}에 사시는군요, 오늘 날씨는 괜찮아요?", "{v}, 좋은 곳이죠, 거기 좋아해요?",
                 "{v}에 계시는군요, 얼마나 사셨어요?", "{v|이라니} 멋진 곳이네요."],
        "ask": ["제가 어디 산다고 했죠?", "저 어디 사는지 기억해요?", "제가 사는 도시가 어디예요?", "나 어디 산다고 했지?"],
        "answer": ["{v}에 사세요.", "{v|이요}.", "{v}에 산다고 하셨어요.", "{v}에 계시잖아요."],
        "unknown": ["어디 사시는지 아직 말씀 안 하셨어요.", "사는 곳은 못 들었어요. 어디 사세요?",
                    "이 대화에서 도시 얘기는 없었어요.", "어디 사는지 알려 주신 적이 없어서 몰라요.",
                    "아직 모르겠어요, 어느 도시에 사세요?", "사는 곳을 알려 주시면 기억할게요."],
        "correct": ["아, 이제 {old|이} 아니라 {v}에 살아요.", "잘못 말했어요, {v|이에요}.", "이사해서 이제 {v|이에요}."],
        "ack": ["알겠어요, 이제 {v}에 사시는군요.", "{v|으로} 기억할게요.", "{old|이} 아니라 {v}, 알겠어요."],
    },
    "food": {
        "tell": ["제가 제일 좋아하는 음식은 {v|이에요}.", "저는 {v|이} 제일 좋아요.", "{v|은} 매일 먹을 수 있어요",
                 "최애 음식은 {v|이에요}.", "{v|이라면} 언제든 좋아요."],
        "echo": ["{v}, 맛있죠!", "{v|을} 좋아하시는군요, 직접 만들어 드세요?", "{v|은} 정말 든든하죠.",
                 "{v} 좋아하는 사람 많죠, 저도 이해돼요.", "매일 {v|이라니}, 그 마음 알 것 같아요."],
        "ask": ["제가 좋아하는 음식이 뭐예요?", "내 최애 음식 기억해요?", "제가 매일 먹을 수 있다고 한 게 뭐였죠?",
                "제가 제일 좋아하는 음식 알아요?"],
        "answer": ["{v|이요}!", "{v|을} 제일 좋아하세요.", "{v|이라고} 하셨어요.", "최애 음식은 {v|이에요}."],
        "unknown": ["좋아하는 음식은 아직 안 알려 주셨어요.", "음식 얘기를 안 해서 몰라요. 뭘 좋아하세요?",
                    "이 대화에서는 음식 얘기가 없었어요.", "아직 모르겠어요. 제일 좋아하는 음식이 뭐예요?",
                    "최애 음식을 말씀하신 적이 없어요.", "알려 주시면 꼭 기억할게요, 아직은 몰라요."],
        "correct": ["아니다, {old}보다 {v|이} 더 좋아요.", "사실 제일 좋아하는 건 {v|이에요}.", "바꿀게요, {v|이요}."],
        "ack": ["알겠어요, {v|이} 최고군요.", "{v|으로} 기억할게요!", "{old} 말고 {v}, 알겠어요."],
    },
    "colour": {
        "tell": ["제가 좋아하는 색은 {v|이에요}.", "저는 {v|이} 제일 좋아요.", "최애 색깔은 {v|이에요}", "{v} 물건만 보면 사고 싶어요."],
        "echo": ["{v}, 예쁜 색이죠!", "{v|을} 좋아하시는군요. 방도 {v|이에요}?", "{v}, 좋은 선택이에요.",
                 "{v} 좋아하는 분들은 감각이 좋더라고요."],
        "ask": ["제가 좋아하는 색이 뭐예요?", "내 최애 색 기억해요?", "제가 무슨 색 좋아한다고 했죠?"],
        "answer": ["{v|이요}.", "{v|을} 좋아하세요.", "{v|이라고} 하셨어요.", "좋아하는 색은 {v|이에요}."],
        "unknown": ["좋아하는 색은 아직 못 들었어요.", "색깔 얘기를 안 하셔서 몰라요. 무슨 색 좋아하세요?",
                    "이 대화에서 색 얘기는 없었어요.", "아직 모르겠어요, 알려 주시면 기억할게요.",
                    "좋아하는 색을 말씀하신 적이 없어요."],
        "correct": ["아니다, {v|이} 더 좋아요.", "사실 {old}보다 {v|이에요}.", "바꿀게요, {v|이요}."],
        "ack": ["알겠어요, {v|으로} 기억할게요.", "{v|이} 최고군요!", "{old} 말고 {v}, 알겠어요."],
    },
    "number": {
        "tell": ["제 행운의 숫자는 {v|이에요}.", "이 숫자 좀 기억해 줘요: {v}.", "사물함 번호는 {v|이에요}",
                 "{v}번 기억해 주세요.", "제 방 번호는 {v}호예요."],
        "echo": ["{v}, 기억할게요.", "알겠어요, {v}.", "{v}, 잊지 않을게요.", "숫자 {v}, 적어 둘게요."],
        "ask": ["아까 그 숫자 뭐였죠?", "제가 말한 숫자 기억해요?", "기억해 달라고 한 숫자가 뭐예요?", "내 번호 뭐였지?"],
        "answer": ["{v|이에요}.", "숫자는 {v|이에요}.", "{v|이라고} 하셨어요.", "{v}!"],
        "unknown": ["아직 숫자를 안 알려 주셨어요.", "기억할 숫자를 받은 적이 없어요.", "이 대화에서 숫자는 안 나왔어요.",
                    "무슨 숫자요? 아직 못 들었어요.", "숫자를 알려 주시면 기억할게요."],
        "correct": ["아, {old|이} 아니라 {v|이에요}.", "정정할게요, {v|이에요}.", "숫자 바꿔요, {v|으로} 해 주세요."],
        "ack": ["알겠어요, {v|으로} 바꿨어요.", "{v}, 다시 기억할게요.", "{old} 말고 {v}, 알겠어요."],
    },
    "job": {
        "tell": ["저는 {v|이에요}.", "{v|으로} 일하고 있어요.", "제 직업은 {v|이에요}", "{v|으로} 일한 지 오 년 됐어요."],
        "echo": ["{v|이시군요}, 바쁘시겠어요!", "{v}, 멋진 일이네요, 일은 재미있어요?", "{v|으로} 일하시는군요, 힘든 점은 없어요?",
                 "{v|이라니}, 중요한 일을 하시네요."],
        "ask": ["제 직업이 뭐예요?", "제가 무슨 일 한다고 했죠?", "내 직업 기억해요?"],
        "answer": ["{v|이에요}.", "{v|으로} 일하세요.", "{v|이라고} 하셨어요.", "직업은 {v|이에요}."],
        "unknown": ["무슨 일 하시는지 아직 못 들었어요.", "직업은 말씀 안 하셨어요. 무슨 일 하세요?",
                    "이 대화에서 일 얘기는 없었어요.", "아직 모르겠어요, 알려 주시면 기억할게요.",
                    "직업 얘기를 한 적이 없어서 몰라요."],
        "correct": ["아, 이제 {old|이} 아니라 {v|이에요}.", "사실 {v|이에요}.", "이직해서 이제 {v|이에요}."],
        "ack": ["알겠어요, 이제 {v|이시군요}.", "{v|으로} 기억할게요.", "{old} 말고 {v}, 알겠어요."],
    },
    "code": {
        "tell": ["암호는 {v|이에요}.", "이 단어 기억해 줘요: {v}.", "비밀 단어는 {v|이야}", "오늘 암호: {v}."],
        "echo": ["암호 {v}, 기억할게요.", "{v}, 알겠어요.", "{v}, 잘 간직할게요.", "알겠어요, 비밀 단어는 {v|이군요}."],
        "ask": ["암호가 뭐였죠?", "비밀 단어 기억해요?", "아까 그 암호 말해 줄래요?", "내가 준 단어 뭐였지?"],
        "answer": ["암호는 {v|이에요}.", "{v|이에요}.", "{v|이라고} 하셨어요.", "{v}!"],
        "unknown": ["아직 암호를 안 알려 주셨어요.", "비밀 단어는 받은 적이 없어요.", "이 대화에서는 암호가 안 나왔어요.",
                    "무슨 암호요? 아직 못 들었어요.", "암호를 알려 주시면 기억할게요."],
        "correct": ["암호 바꿀게요, {old|이} 아니라 {v|이에요}.", "정정: {v|이에요}.", "새 암호는 {v|이에요}."],
        "ack": ["알겠어요, 이제 암호는 {v|이에요}.", "{v|으로} 바꿨어요.", "{old} 말고 {v}, 기억할게요."],
    },
}
TEMPLATES = {"en": EN, "ko": KO}
# Put before a bot reply that would start with the fact's value (compose.py --lead-ins). A
# message's first word is spelt without the word-start mark ("포", not "▁포") that the same
# word has inside the telling, so the copy head cannot copy a reply's first piece from it.
LEAD_INS = {"en": ["Sure, ", "Yes: ", "I remember: ", "Of course: ", "Easy: "],
            "ko": ["네, ", "기억해요. ", "물론이죠, ", "음, ", "그럼요, "]}
DISTANCES = [0] * 26 + [1] * 16 + [2] * 12 + [3] * 11 + [4] * 9 + [5] * 8 + [6] * 8 + [7] * 5 + [8] * 5


def conversation(lang: str, filler: Callable[[], tuple[str, str]], rng: random.Random,
                 budget: Budget, invented: tuple[int, int] | None = None,
                 lead_ins: bool = False) -> list[tuple[str, str]]:
    """One memory conversation: tell 1-3 facts, chat, maybe correct one, ask for them back
    (and maybe for one never told)."""
    t = TEMPLATES[lang]
    kinds = rng.sample(list(t), rng.choice([1, 1, 1, 2, 2, 3]))
    kind_word = rng.choice(KO_PET_KINDS if lang == "ko" else EN_PET_KINDS)
    facts = {k: value(k, lang, rng, invented) for k in kinds}
    messages = []

    def exchange(kind: str, user: str, bot: str, v: str, old: str = ""):
        values = {"v": v, "old": old, "kind": kind_word}
        messages.append(("user", fill(rng.choice(t[kind][user]), values)))
        reply = budget.pick(t[kind][bot], values, rng)
        if lead_ins and any(x and reply.startswith(x) for x in (v, old)):
            reply = rng.choice(LEAD_INS[lang]) + reply
        messages.append(("assistant", reply))

    for k in kinds:
        exchange(k, "tell", "echo", facts[k])
    for _ in range(rng.choice(DISTANCES)):
        messages += list(zip(("user", "assistant"), filler()))
    if rng.random() < 0.12:
        k = rng.choice(kinds)
        new = value(k, lang, rng, invented)
        if new != facts[k]:
            exchange(k, "correct", "ack", new, facts[k])
            facts[k] = new
            for _ in range(rng.choice([0, 0, 1, 2])):
                messages += list(zip(("user", "assistant"), filler()))
    asked = kinds[:]
    rng.shuffle(asked)
    if rng.random() < 0.15:
        untold = [k for k in t if k not in kinds]
        asked.insert(rng.randrange(len(asked) + 1), rng.choice(untold))
    for i, k in enumerate(asked):
        if i and rng.random() < 0.4:
            messages += list(zip(("user", "assistant"), filler()))
        if k in facts:
            exchange(k, "ask", "answer", facts[k])
        else:
            exchange(k, "ask", "unknown", "")
    return messages


def curriculum(lang: str, target_chars: int, filler: Callable[[], tuple[str, str]],
               rng: random.Random, budget: Budget, invented: tuple[int, int] | None = None,
               lead_ins: bool = False) -> list[list[tuple[str, str]]]:
    out, total = [], 0
    while total < target_chars:
        conv = conversation(lang, filler, rng, budget, invented, lead_ins)
        budget.count(conv)
        out.append(conv)
        total += sum(len(text) for _, text in conv)
    return out
